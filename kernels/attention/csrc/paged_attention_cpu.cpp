// Paged attention for few query rows per sequence (decode, speculative verify) on CPU, reading K/V in place.
//
// Contract (kernels/attention/cpu_paged.py builds the arguments; the plain-PyTorch reference is torch_paged.py):
//   q            [N, nh, d] contiguous: the rows of G sequences, sequence g owning rows
//                query_start[g] .. query_start[g+1]-1, which are the LAST positions of its seq_lens[g] long context
//   kv_cache     [num_blocks, 2, block_size, nkv, d] contiguous (index 0 = K, 1 = V): float32, bfloat16 or float16
//                with a float32 q (the arithmetic is float32), or float64 with a float64 q (float64 throughout)
//   out          [N, nh, d] contiguous, q's dtype, written
//   query_start  [G+1] int64, seq_lens [G] int64, block_tables [G, max_blocks] int32 (entries past a context unused)
// Query row i of a sequence with Q rows and context S sees positions 0 .. S-Q+i (bottom-right aligned causal); query
// head h reads KV head h / (nh / nkv). Every block id read is bounds-checked (a bad table raises, never reads wild).
//
// One work item per (sequence, KV head): its blocks are read once, in order, and every query row of its group
// consumes each block (scores, block max, online-softmax rescale, weighted V). A row's arithmetic depends only on
// its own query and the positions it sees, never on the batch or on the other rows: a row gives the same bits as a
// decode row or as one of k+1 verify rows (what lossless speculative decoding wants).

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>
#include <vector>

namespace {

// exp(x) for x <= 0 in plain arithmetic, so that loops over it vectorise (std::exp is a call per element). Range
// reduction x = n ln2 + r with ln2 split in a short high part and a correction, |r| <= ln2/2, then e^r by its Taylor
// series to r^7 (truncation < 4e-9 relative) and 2^n put into the exponent bits. Checked over [-87, 0] against the
// exact value: within 1.1 ulp. x below -87 gives ~1e-38 instead of 0 (harmless next to a softmax sum >= 1).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::nearbyint(x * 1.44269504088896341f);       // x / ln2
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;     // ln2 = 0.693359375 - 2.12194440e-4
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_nonpositive(double x) { return std::exp(x); }

template <typename acc_t, typename cache_t>
void attend_one(const acc_t* q, const cache_t* cache, acc_t* out, const int64_t* query_start, const int64_t* seq_lens,
                const int32_t* block_tables, int64_t max_blocks, int64_t num_blocks, int64_t nh, int64_t nkv,
                int64_t d, int64_t block_size, acc_t scale, int64_t seq, int64_t kv_head) {
  const int64_t group = nh / nkv;
  const int64_t first_row = query_start[seq], num_queries = query_start[seq + 1] - first_row;
  const int64_t seq_len = seq_lens[seq];
  const int64_t rows = num_queries * group;  // row r = (query i = r / group, head kv_head * group + r % group)
  const int64_t pos_stride = nkv * d, block_stride = 2 * block_size * nkv * d;
  std::vector<acc_t> row_max(rows, -std::numeric_limits<acc_t>::infinity()), row_sum(rows, 0);
  std::vector<acc_t> acc(rows * d, 0), scores(block_size);
  const int64_t num_seq_blocks = (seq_len + block_size - 1) / block_size;
  for (int64_t j = 0; j < num_seq_blocks; ++j) {
    const int64_t block = block_tables[seq * max_blocks + j];
    TORCH_CHECK(block >= 0 && block < num_blocks, "block_tables[", seq, ", ", j, "] = ", block,
                " is not a block of the cache (", num_blocks, " blocks)");
    const cache_t* keys = cache + block * block_stride + kv_head * d;
    const cache_t* values = keys + block_size * pos_stride;
    const int64_t first_pos = j * block_size, block_len = std::min(block_size, seq_len - first_pos);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r / group;
      const int64_t visible = std::min(block_len, seq_len - num_queries + i - first_pos + 1);
      if (visible <= 0) continue;  // NOTE: rows are in position order, but a later row may still see this block
      const acc_t* qr = q + ((first_row + i) * nh + kv_head * group + r % group) * d;
      acc_t block_max = -std::numeric_limits<acc_t>::infinity();
      for (int64_t p = 0; p < visible; ++p) {
        const cache_t* kp = keys + p * pos_stride;
        acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t e = 0; e < d; ++e) dot += qr[e] * static_cast<acc_t>(kp[e]);
        scores[p] = dot * scale;
        block_max = std::max(block_max, scores[p]);
      }
      const acc_t new_max = std::max(row_max[r], block_max);
      const acc_t rescale = exp_nonpositive(row_max[r] - new_max);  // ~0 on the first block (-inf - finite)
      acc_t* ar = acc.data() + r * d;
      acc_t sum = row_sum[r] * rescale;
      if (rescale != 1) {
#pragma omp simd
        for (int64_t e = 0; e < d; ++e) ar[e] *= rescale;
      }
      acc_t* sp = scores.data();
#pragma omp simd reduction(+ : sum)
      for (int64_t p = 0; p < visible; ++p) {
        sp[p] = exp_nonpositive(sp[p] - new_max);
        sum += sp[p];
      }
      for (int64_t p = 0; p < visible; ++p) {
        const acc_t w = scores[p];
        const cache_t* vp = values + p * pos_stride;
#pragma omp simd
        for (int64_t e = 0; e < d; ++e) ar[e] += w * static_cast<acc_t>(vp[e]);
      }
      row_sum[r] = sum;
      row_max[r] = new_max;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {  // every row saw position 0 at least, so row_sum > 0
    acc_t* o = out + ((first_row + r / group) * nh + kv_head * group + r % group) * d;
    const acc_t inv = 1 / row_sum[r];
    for (int64_t e = 0; e < d; ++e) o[e] = acc[r * d + e] * inv;
  }
}

void paged_attention_decode(const torch::Tensor& q, const torch::Tensor& kv_cache, torch::Tensor& out,
                            const torch::Tensor& query_start, const torch::Tensor& seq_lens,
                            const torch::Tensor& block_tables, double scale) {
  TORCH_CHECK(q.device().is_cpu() && kv_cache.device().is_cpu(), "q and kv_cache must be CPU tensors");
  const bool is_double = kv_cache.scalar_type() == torch::kFloat64;
  const auto q_type = is_double ? torch::kFloat64 : torch::kFloat32;
  TORCH_CHECK(q.dim() == 3 && q.scalar_type() == q_type && q.is_contiguous(), "q must be a contiguous ",
              is_double ? "float64" : "float32", " [N, nh, d] tensor for a ", kv_cache.scalar_type(),
              " cache, got ", q.sizes(), " ", q.scalar_type());
  TORCH_CHECK(out.sizes() == q.sizes() && out.scalar_type() == q_type && out.is_contiguous(),
              "out must be a contiguous tensor shaped like q, of q's dtype");
  TORCH_CHECK(kv_cache.dim() == 5 && kv_cache.size(1) == 2 && kv_cache.is_contiguous(),
              "kv_cache must be a contiguous [num_blocks, 2, block_size, nkv, d] tensor, got ", kv_cache.sizes());
  const int64_t nh = q.size(1), d = q.size(2), nkv = kv_cache.size(3), block_size = kv_cache.size(2);
  TORCH_CHECK(kv_cache.size(4) == d, "kv_cache head_dim ", kv_cache.size(4), " != q head_dim ", d);
  TORCH_CHECK(nkv > 0 && nh % nkv == 0, "num_heads ", nh, " is not a multiple of num_kv_heads ", nkv);
  TORCH_CHECK(query_start.scalar_type() == torch::kInt64 && query_start.dim() == 1 && query_start.is_contiguous(),
              "query_start must be a contiguous int64 vector");
  TORCH_CHECK(seq_lens.scalar_type() == torch::kInt64 && seq_lens.dim() == 1 && seq_lens.is_contiguous(),
              "seq_lens must be a contiguous int64 vector");
  const int64_t num_seqs = seq_lens.size(0);
  TORCH_CHECK(query_start.size(0) == num_seqs + 1, "query_start has ", query_start.size(0), " entries, expected ",
              num_seqs + 1);
  TORCH_CHECK(block_tables.scalar_type() == torch::kInt32 && block_tables.dim() == 2 &&
                  block_tables.size(0) == num_seqs && block_tables.is_contiguous(),
              "block_tables must be a contiguous int32 [num_seqs, max_blocks] tensor");
  const int64_t* qs = query_start.data_ptr<int64_t>();
  const int64_t* sl = seq_lens.data_ptr<int64_t>();
  const int64_t max_blocks = block_tables.size(1);
  TORCH_CHECK(qs[0] == 0 && qs[num_seqs] == q.size(0), "query_start must run from 0 to the ", q.size(0), " rows of q");
  for (int64_t g = 0; g < num_seqs; ++g) {
    const int64_t num_queries = qs[g + 1] - qs[g];
    TORCH_CHECK(num_queries >= 1 && sl[g] >= num_queries && sl[g] <= max_blocks * block_size, "sequence ", g,
                ": ", num_queries, " query rows and seq_len ", sl[g], " do not fit its ", max_blocks,
                " blocks of ", block_size);
  }
  const int32_t* tables = block_tables.data_ptr<int32_t>();
  const int64_t num_blocks = kv_cache.size(0);
  const auto run = [&](auto acc_zero, auto cache_zero) {
    using acc_t = decltype(acc_zero);
    using cache_t = decltype(cache_zero);
    const cache_t* cache = static_cast<const cache_t*>(kv_cache.data_ptr());
    const acc_t* qp = static_cast<const acc_t*>(q.data_ptr());
    acc_t* op = static_cast<acc_t*>(out.data_ptr());
    at::parallel_for(0, num_seqs * nkv, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item)
        attend_one<acc_t, cache_t>(qp, cache, op, qs, sl, tables, max_blocks, num_blocks, nh, nkv, d, block_size,
                                   static_cast<acc_t>(scale), item / nkv, item % nkv);
    });
  };
  switch (kv_cache.scalar_type()) {
    case torch::kFloat32: run(float{}, float{}); break;
    case torch::kBFloat16: run(float{}, c10::BFloat16{}); break;
    case torch::kHalf: run(float{}, c10::Half{}); break;
    case torch::kFloat64: run(double{}, double{}); break;
    default: TORCH_CHECK(false, "kv_cache dtype ", kv_cache.scalar_type(), " is not float32/bfloat16/float16/float64");
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_attention_decode", &paged_attention_decode,
        "Paged causal attention for few query rows per sequence, K/V read in place (see the file's contract)");
}
