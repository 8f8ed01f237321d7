"""One tool request ("intent"): how the user asks for it, the call it must produce, the result and the answer.

`make_intent(rng, name)` draws the arguments first, then words the request so that every argument value appears in
it verbatim (or as a unit name that maps onto a unit code), so a model can learn to copy it into the call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from scripts.tiny_model import lexicon
from scripts.tiny_model.tools import convert, evaluate_expression, response_json

# Intents that read as a clause ("check the weather in Oslo") and can be joined into one parallel request.
CLAUSE_TOOLS = ("get_weather", "calculator", "convert_units")


@dataclass(frozen=True)
class Intent:
    name: str  # the tool to call
    arguments: dict[str, Any]  # the expected arguments, in schema order
    request: str  # a clause for CLAUSE_TOOLS ("check the weather in Oslo"), else a whole message
    purpose: str  # what the reasoning says the user wants ("the weather in Oslo")
    result: str  # the tool message's content
    answer: str  # one sentence of the final answer, quoting the result


def _weather(rng: random.Random) -> Intent:
    city = rng.choice(lexicon.CITIES)
    args: dict[str, Any] = {"city": city}
    unit = rng.choice((None, None, "celsius", "fahrenheit"))
    days = rng.randint(2, 7) if rng.random() < 0.3 else None
    if days is not None:
        request = f"get a {days}-day forecast for {city}"
    else:
        request = rng.choice(("check the weather in {c}", "tell me the weather in {c}", "look up the weather in {c}",
                              "find out how warm it is in {c}")).format(c=city)
    if unit is not None:
        args["unit"] = unit
        request += f" in {unit}"
    if days is not None:
        args["days"] = days
    celsius = rng.randint(-10, 35)
    temp = round(celsius * 9 / 5 + 32) if unit == "fahrenheit" else celsius
    symbol = "°F" if unit == "fahrenheit" else "°C"
    condition = rng.choice(lexicon.CONDITIONS)
    result = {"city": city, "temperature": temp, "unit": unit or "celsius", "condition": condition}
    answer = f"In {city} it is {temp} {symbol} and {condition}."
    return Intent("get_weather", args, request, f"the weather in {city}", response_json(result), answer)


def _calculator(rng: random.Random) -> Intent:
    expression = rng.choice(lexicon.EXPRESSIONS)
    value = evaluate_expression(expression)
    request = rng.choice(("calculate {e}", "compute {e} with the calculator", "work out {e}")).format(e=expression)
    return Intent("calculator", {"expression": expression}, request, f"the value of {expression}",
                  response_json({"result": value}), f"{expression} = {value}.")


def _number(rng: random.Random) -> int | float:
    if rng.random() < 0.5:
        return rng.randint(1, 250)
    return round(rng.randint(1, 999) / rng.choice((10, 100, 4)), 2)


def _convert(rng: random.Random) -> Intent:
    family = rng.choice(lexicon.UNIT_FAMILIES)
    (src, src_name), (dst, dst_name) = rng.sample(family, 2)
    value = _number(rng)
    out = convert(float(value), src, dst)
    request = rng.choice(("convert {v} {s} to {d}", "change {v} {s} into {d}", "tell me {v} {s} in {d}"))
    request = request.format(v=value, s=src_name, d=dst_name)
    return Intent("convert_units", {"value": value, "from_unit": src, "to_unit": dst}, request,
                  f"to convert {value} {src_name} to {dst_name}", response_json({"value": out, "unit": dst}),
                  f"{value} {src_name} is {out} {dst_name}.")


def _search(rng: random.Random) -> Intent:
    query = rng.choice(lexicon.SEARCH_TOPICS)
    args: dict[str, Any] = {"query": query}
    request = "Search the web"
    if rng.random() < 0.4:
        args["max_results"] = rng.randint(1, 10)
        request += f" for the top {args['max_results']} results"
    if rng.random() < 0.35:
        args["safe_search"] = rng.random() < 0.5
        request += " with safe search " + ("on" if args["safe_search"] else "off")
    request += ". Query: " + query
    title = rng.choice(("{q} - Wikipedia", "A guide to {q}", "{q}: questions and answers")).format(q=query)
    results = [{"title": title, "url": f"https://example.org/{rng.randint(100, 999)}"}]
    return Intent("web_search", args, request, "a web search", response_json({"results": results}),
                  f"The top result is: {title}")


def _write_file(rng: random.Random) -> Intent:
    path, content = rng.choice(lexicon.FILE_PATHS), rng.choice(lexicon.FILE_CONTENTS)
    args: dict[str, Any] = {"path": path, "content": content}
    note = ""
    if rng.random() < 0.4:
        args["overwrite"] = rng.random() < 0.5
        note = " Overwrite it if it exists." if args["overwrite"] else " Do not overwrite an existing file."
    request = f"Save this to {path}.{note}\n```\n{content}\n```"
    size = len(content.encode("utf-8"))
    return Intent("write_file", args, request, f"to save a file to {path}",
                  response_json({"ok": True, "bytes_written": size}), f"Saved {size} bytes to {path}.")


def _send_email(rng: random.Random) -> Intent:
    to = rng.sample(lexicon.EMAIL_ADDRESSES, rng.choice((1, 1, 2, 3)))
    subject, body = rng.choice(lexicon.EMAIL_SUBJECTS), rng.choice(lexicon.EMAIL_BODIES)
    args: dict[str, Any] = {"to": to, "subject": subject, "body": body}
    kind = "an"
    if rng.random() < 0.4:
        args["urgent"] = rng.random() < 0.5
        kind = "an urgent" if args["urgent"] else "a non-urgent"
    who = to[0] if len(to) == 1 else ", ".join(to[:-1]) + " and " + to[-1]
    request = f"Send {kind} email to {who}.\nSubject: {subject}\nBody:\n{body}"
    msg_id = f"msg-{rng.randint(1000, 9999)}"
    return Intent("send_email", args, request, "to send an email",
                  response_json({"status": "sent", "id": msg_id}), f"The email was sent to {who} (id {msg_id}).")


_MAKERS = {
    "get_weather": _weather,
    "calculator": _calculator,
    "convert_units": _convert,
    "web_search": _search,
    "write_file": _write_file,
    "send_email": _send_email,
}


def make_intent(rng: random.Random, name: str) -> Intent:
    return _MAKERS[name](rng)
