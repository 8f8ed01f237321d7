#!/usr/bin/env bash
# Checks of the Docker deployment (docker/).
#
# Always: tests/docker, which need no Docker engine (Compose validates compose.yaml, promtool the Prometheus config
# and every dashboard query, the dashboard's series against a real server's /metrics, a real Prometheus scraping
# it, and each image's ENTRYPOINT + CMD run directly here until its own HEALTHCHECK passes). Tools that are absent
# are skipped with a reason: `apt-get install -y docker-compose prometheus` brings them.
#
# With DOCKER_BUILD=1 and a Docker engine: also builds the CPU image, runs it, waits for the container's own health
# status, checks it runs as non-root, sends one chat request and stops it (SIGTERM drain, exit code 0).
#
#   bash scripts/docker_checks.sh
#   DOCKER_BUILD=1 bash scripts/docker_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m pytest tests/docker -q -ra -p no:cacheprovider

[ "${DOCKER_BUILD:-0}" = 1 ] || exit 0
docker info >/dev/null 2>&1 || { echo "FAIL: DOCKER_BUILD=1 but no Docker engine answers (docker info)"; exit 2; }
IMAGE=${IMAGE:-glm-serve:cpu-check}
NAME=glm-serve-check-$$
docker build -f docker/Dockerfile.cpu -t "$IMAGE" .
docker run -d --name "$NAME" -p 127.0.0.1::8000 "$IMAGE" >/dev/null
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
PORT=$(docker port "$NAME" 8000/tcp | head -n 1 | awk -F: '{print $NF}')

STATUS=starting
for _ in $(seq 1 90); do
  STATUS=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
  [ "$STATUS" = healthy ] && break
  if [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" != true ]; then
    docker logs "$NAME"; echo "FAIL: the container exited"; exit 1
  fi
  sleep 2
done
[ "$STATUS" = healthy ] || { docker logs "$NAME"; echo "FAIL: container health is '$STATUS' after 180 s"; exit 1; }
echo "container healthy on 127.0.0.1:$PORT"

[ "$(docker exec "$NAME" id -u)" != 0 ] || { echo "FAIL: the server runs as root"; exit 1; }
MODEL=$(curl -fsS "http://127.0.0.1:$PORT/v1/models" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
curl -fsS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 8}"
echo
docker stop -t 45 "$NAME" >/dev/null
CODE=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
[ "$CODE" = 0 ] || { docker logs "$NAME" | tail -20; echo "FAIL: exit code $CODE after docker stop"; exit 1; }
echo "OK: built, healthy, non-root, answered, drained on SIGTERM"
