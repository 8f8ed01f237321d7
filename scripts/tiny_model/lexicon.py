"""Word lists the corpus generator draws from. Plain data: names, places, items, code snippets, phrases.

Values are chosen to exercise what the tool-call format must carry intact: unicode, quotes, backslashes, newlines
and code. Held-out evaluation conversations are drawn from the same lists with another seed.
"""

from __future__ import annotations

NAMES = (
    "Tom", "Anna", "Ravi", "Mei", "Lucas", "Sofia", "Omar", "Chloé", "Jonas", "Aiko", "Pedro", "Zoë", "Ivan",
    "Fatima", "Liam", "Nina", "Kofi", "Elena", "Hugo", "Sara", "Mateo", "Yuki", "Ben", "Leila", "Noah", "Ingrid",
)

ITEMS = (
    "apple", "book", "marble", "pencil", "stamp", "cookie", "card", "shell", "coin", "sticker", "orange", "ticket",
    "egg", "flower", "toy car", "balloon", "cupcake", "puzzle", "candle", "button",
)

# (city as the user writes it, unicode included)
CITIES = (
    "Paris", "Rome", "Berlin", "Tokyo", "Zürich", "São Paulo", "Kraków", "Reykjavík", "New York", "Cairo",
    "Mumbai", "Sydney", "Toronto", "Lima", "Oslo", "Madrid", "Seoul", "Nairobi", "Istanbul", "Montréal",
    "Málaga", "Köln", "Ho Chi Minh City", "Beijing", "Lagos", "Dublin", "Athens", "Vienna", "Kyiv", "Quito",
    "München", "Göteborg", "Bogotá", "Wellington", "Hanoi", "Lisbon", "Prague", "Helsinki", "Dubai", "Chicago",
)

CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "clear", "stormy", "partly cloudy", "hazy")

# (unit, spoken name) for convert_units; pairs drawn from the same family.
UNIT_FAMILIES = (
    (("km", "kilometers"), ("mi", "miles"), ("m", "meters"), ("ft", "feet")),
    (("kg", "kilograms"), ("lb", "pounds"), ("g", "grams"), ("oz", "ounces")),
    (("C", "degrees Celsius"), ("F", "degrees Fahrenheit"), ("K", "kelvin")),
    (("l", "liters"), ("gal", "gallons"), ("ml", "milliliters"), ("cup", "cups")),
)

SEARCH_TOPICS = (
    "best pizza in Napoli", "how to repot a cactus", "history of the Eiffel Tower", "café au lait recipe",
    "Python \"list comprehension\" examples", "train times Zürich to Genève", "why is the sky blue",
    "C:\\Program Files permissions error", "größte Städte Deutschlands", "learn Rust ownership",
    "\"to be or not to be\" meaning", "sourdough starter tips", "Tokyo 東京 cherry blossom dates",
    "regex \\d+ matches digits", "how do solar panels work", "jalapeño salsa", "marathon training plan",
    "SQL JOIN vs UNION", "Beethoven's 9th symphony", "naïve Bayes classifier", "piñata party ideas",
    "bash for loop over files", "Crème brûlée without torch", "São João festival", "JSON \"null\" vs empty string",
)

EMAIL_ADDRESSES = (
    "anna@example.com", "ravi.k@mail.org", "team@acme.io", "mei.lin@uni.edu", "boss@company.com",
    "omar@example.net", "chloé@exemple.fr", "support@shop.co", "jonas+news@posteo.de", "aiko@example.jp",
)

EMAIL_SUBJECTS = (
    "Lunch on Friday", "Meeting notes", "Re: the \"final\" draft", "Party 🎉", "Invoice #4521", "Trip to Kraków",
    "Quick question", "Weekly report", "Code review: path\\to\\file", "Happy birthday!",
)

EMAIL_BODIES = (
    "Hi,\nare we still on for lunch?\nBest", "See you at 10:30.", "The file is in C:\\shared\\docs.",
    "Please read the \"summary\" section first.", "Thanks for everything!\n\n– Tom", "Can we move it to Tuesday?",
    "Attached: 3 slides.\nLet me know.", "Ça va? À bientôt!", "Don't forget the {braces} and [brackets].",
    "Total: 42.50 €",
)

FILE_PATHS = (
    "hello.py", "notes/todo.txt", "src/main.rs", "scripts/run.sh", "C:\\Users\\ana\\notes.txt", "data/config.json",
    "README.md", "app/utils.js", "docs/café.md", "tmp/out.log", "lib/math.py", "web/index.html",
)

FILE_CONTENTS = (
    'print("Hello, world!")',
    'def add(a, b):\n    return a + b\n',
    'fn main() {\n    println!("hi {}", 42);\n}',
    '#!/bin/bash\nfor f in *.txt; do\n  echo "$f"\ndone',
    'path = "C:\\\\Users\\\\ana"\nprint(path)',
    '{"debug": true, "level": 3}',
    '- buy milk\n- call mom\n- fix the "bug"',
    'const greet = (n) => `Hello, ${n}!`;',
    'regex = r"\\d+\\.\\d*"',
    '<h1>Café 😊</h1>\n<p>It\'s open.</p>',
    'x = [1, 2, 3]\nprint(sum(x) / len(x))',
    'SELECT name FROM users WHERE id = 7;',
    'Line one\nLine two\n\tTabbed line',
    'echo "a\\tb" > out.txt',
    '# Notes\n\nÜber alles: naïve résumé.',
)

EXPRESSIONS = (
    "(17 + 5) * 3", "2 ** 10", "144 / 12", "3.5 * 4", "(100 - 37) / 7", "sqrt(81) + 2", "15 % 4", "7 * 8 - 6",
    "1/3 + 1/6", "(2.5 + 7.5) * 10", "999 + 1", "12 * 12 * 12", "round(22 / 7, 3)", "abs(-42)", "45 - 3 * 9",
)

GREETINGS = (
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi there", "Hi! What can I do for you?"),
    ("Good morning!", "Good morning! I hope your day is off to a great start."),
    ("How are you?", "I'm doing well, thank you for asking. How can I help?"),
    ("What's your name?", "I'm a small assistant built for testing glm-serve."),
    ("Thanks a lot!", "You're welcome! Happy to help."),
    ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field."),
    ("Can you say something nice?", "You are doing great, and your curiosity is wonderful."),
    ("Who made you?", "I was trained by the glm-serve project as a tiny test model."),
    ("Good night!", "Good night! Sleep well."),
    ("What can you do?", "I can chat, solve small arithmetic problems and call tools when they are available."),
    ("Bonjour !", "Bonjour ! Comment puis-je vous aider ?"),
    ("Do you like music?", "I don't listen to music, but I enjoy talking about it."),
    ("Tell me a fun fact.", "Octopuses have three hearts and blue blood."),
    ("I'm bored.", "How about a short puzzle or a fun fact to pass the time?"),
    ("See you later!", "See you later! Have a nice day."),
    ("Are you a robot?", "I'm a language model, a program that writes text."),
    ("What day is it today?", "I don't have access to a calendar, but your device can tell you the date."),
    ("Say hi to my friend Ana.", "Hi Ana! Nice to meet you."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
)

GREETING_THOUGHTS = (
    "The user is making small talk. A short friendly reply is enough.",
    "This is casual conversation, no tool or calculation is needed.",
    "A simple friendly answer fits here.",
    "Small talk. I will answer briefly and kindly.",
)

SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly.",
    "You are a friendly assistant that uses tools when they help.",
    "Answer the user's questions accurately.",
)
