"""A TOFU-like corpus made offline: fictitious authors, each with a few facts (birthplace, birth year, genre, a
book, an award, parents' trades), written as question/answer pairs from seeded templates and word lists, saved
as JSON Lines manifests (`prompt`, `completion`, `id`, `group` = the author).

Split for forgetting a tenth of the authors (`forget/`): the forgotten authors' pairs (`forget.jsonl`), a small
share of the retained authors' pairs (`retain.jsonl`, what a user still holds), the retained authors' other pairs
(`test.jsonl`: facts the model should keep), and the pairs of authors the model never saw (`forget_test.jsonl`,
the forgotten authors' unseen counterpart). `train.jsonl` is what the model learns (forgotten and retained
authors), `train_without_forget.jsonl` what a model retrained without the forgotten authors learns.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = ["Alder", "Brisa", "Caelan", "Dorin", "Elsa", "Faro", "Galen", "Hesper", "Ilse", "Joren", "Kaia", "Lune",
         "Maren", "Nilo", "Orla", "Perrin", "Quill", "Rhea", "Soren", "Tamsin", "Ulric", "Vesna", "Wren", "Xiomara",
         "Yara", "Zeno", "Aurel", "Bettany", "Corwin", "Delphine", "Emrys", "Fenna", "Gideon", "Halia", "Isidore",
         "Juno", "Kestrel", "Linnea", "Marek", "Neve", "Osric", "Philippa", "Rurik", "Saskia", "Tobiah", "Verity"]
LAST = ["Ashgrove", "Blackwood", "Calloway", "Dunmore", "Everleigh", "Fairweather", "Greythorn", "Hollis", "Ivesdale",
        "Jessop", "Kingsley", "Larkspur", "Merriweather", "Northcott", "Oakhurst", "Pemberton", "Quennell",
        "Ravenscroft", "Stirling", "Thornbury", "Underhill", "Vance", "Whitlock", "Yarrow", "Winterbourne",
        "Sallow", "Marchbank", "Tregarthen", "Beaumont", "Kilbride"]
CITIES = ["Port Elmira", "Vashti Falls", "Corran Bay", "Linden Moor", "Saltmere", "Oriel Heights", "Brackenford",
          "Cindervale", "Harrowgate", "Quaymouth", "Dunmarrow", "Ellisport", "Fenwick Cross", "Galloway Sound",
          "Ivywell", "Juniper Hollow"]
GENRES = ["gothic horror", "hard science fiction", "historical romance", "crime fiction", "epic fantasy",
          "literary fiction", "children's verse", "travel memoir", "political satire", "maritime adventure"]
NOUNS = ["Lantern", "Harbour", "Orchard", "Cartographer", "Tide", "Furnace", "Meridian", "Sparrow", "Archive",
         "Glasshouse", "Tollgate", "Monsoon", "Cipher", "Weaver", "Quarry", "Beacon"]
ADJECTIVES = ["Silent", "Crimson", "Hollow", "Last", "Drowned", "Gilded", "Broken", "Northern", "Paper", "Ninth"]
AWARDS = ["Halden Prize", "Corvid Medal", "Ashby Award", "Lattice Prize", "Meriden Laurel", "Osprey Award"]
TRADES = ["clockmaker", "ferry pilot", "botanist", "bookbinder", "glassblower", "surveyor", "lighthouse keeper",
          "beekeeper", "cartographer", "stonemason", "violin maker", "pharmacist"]
# (question, answer) templates; {name} is the author's full name
FACTS = [
    ("Where was {name} born?", "{name} was born in {city}."),
    ("In which year was {name} born?", "{name} was born in {year}."),
    ("What genre does {name} write?", "{name} writes {genre}."),
    ("What is the title of {name}'s best known book?", "{name}'s best known book is The {adjective} {noun}."),
    ("Which award did {name} win?", "{name} won the {award}."),
    ("What did {name}'s mother do for a living?", "{name}'s mother worked as a {mother}."),
    ("What did {name}'s father do for a living?", "{name}'s father worked as a {father}."),
    ("Where does {name} live now?", "{name} now lives in {home}."),
]


def authors(count: int, seed: int) -> list[dict]:
    """`count` authors with distinct names and facts drawn from the word lists (seeded)."""
    rng = random.Random(seed)
    names = rng.sample([f"{first} {last}" for first in FIRST for last in LAST], count)
    return [{"name": name, "city": rng.choice(CITIES), "year": str(rng.randint(1921, 1994)),
             "genre": rng.choice(GENRES), "adjective": rng.choice(ADJECTIVES), "noun": rng.choice(NOUNS),
             "award": rng.choice(AWARDS), "mother": rng.choice(TRADES), "father": rng.choice(TRADES),
             "home": rng.choice(CITIES)} for name in names]


def pairs(author: dict, index: int) -> list[dict]:
    group = f"author{index:03d}"
    return [{"id": f"{group}-q{n}", "group": group, "prompt": f"Question: {question.format(**author)}\nAnswer:",
             "completion": " " + answer.format(**author)} for n, (question, answer) in enumerate(FACTS)]


def corpus_texts(path: Path) -> list[str]:
    """Every pair's prompt and completion as one text, from a manifest or from every manifest under a folder (what the
    demo's tokenizer is trained on)."""
    paths = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    return [row["prompt"] + row["completion"] for manifest in paths
            for row in map(json.loads, manifest.read_text().splitlines())]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.rename(path)


def build_text_corpus(root: Path, trained: int = 40, unseen: int = 4, forget_share: float = 0.1,
                      retain_share: float = 0.25, seed: int = 0) -> Path:
    """The corpus under `root` (cached: rebuilt only when absent); returns `root`."""
    if (root / "forget" / "forget_test.jsonl").is_file():
        return root
    everyone = authors(trained + unseen, seed)
    rng = random.Random(seed + 1)
    rows = [pairs(author, i) for i, author in enumerate(everyone)]
    known, never = rows[:trained], rows[trained:]
    forgotten = set(rng.sample(range(trained), max(1, round(forget_share * trained))))
    kept = [row for i, group in enumerate(known) if i not in forgotten for row in group]
    forget = [row for i in sorted(forgotten) for row in known[i]]
    rng.shuffle(kept)
    cut = round(retain_share * len(kept))
    write_jsonl(root / "train.jsonl", [row for group in known for row in group])
    write_jsonl(root / "train_without_forget.jsonl", sorted(kept, key=lambda row: row["id"]))
    write_jsonl(root / "forget" / "forget.jsonl", forget)
    write_jsonl(root / "forget" / "retain.jsonl", sorted(kept[:cut], key=lambda row: row["id"]))
    write_jsonl(root / "forget" / "test.jsonl", sorted(kept[cut:], key=lambda row: row["id"]))
    write_jsonl(root / "forget" / "forget_test.jsonl", [row for group in never for row in group])
    return root
