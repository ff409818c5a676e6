"""Shared test data for the retriever tests: a small corpus on distinct topics written as files,
and the real MiniLM embedder loaded once (the model-free embedder is ``fakes.FakeEmbedder``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrievers.dense import SentenceTransformerEmbedder

#: (doc_id stem, title, text): thirty short documents on clearly distinct topics.
TOPICS: list[tuple[str, str, str]] = [
    (
        "photosynthesis",
        "Photosynthesis",
        "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
        "to make glucose. Chlorophyll in the leaves absorbs the light. Oxygen is released as a by-product.",
    ),
    (
        "volcano",
        "Volcanoes",
        "A volcano is an opening in the crust of the Earth where molten rock called magma escapes. "
        "Eruptions can throw ash high into the atmosphere. Lava flows cool into new rock.",
    ),
    (
        "honeybee",
        "Honeybees",
        "Honeybees live in colonies ruled by a single queen. Worker bees collect nectar and pollen "
        "from flowers. They turn the nectar into honey stored in wax combs.",
    ),
    (
        "chess",
        "Chess",
        "Chess is a board game for two players on a checkered board of sixty-four squares. "
        "Each player starts with sixteen pieces. The goal is to checkmate the opposing king.",
    ),
    (
        "jazz",
        "Jazz",
        "Jazz is a music genre that originated in New Orleans in the early twentieth century. "
        "It is known for improvisation, swing and blue notes. Louis Armstrong was a famous trumpeter.",
    ),
    (
        "mars",
        "Mars",
        "Mars is the fourth planet from the Sun and is often called the Red Planet. Iron oxide dust "
        "gives its surface a reddish colour. Olympus Mons on Mars is the tallest volcano in the solar system.",
    ),
    (
        "coffee",
        "Coffee",
        "Coffee is a drink brewed from roasted coffee beans, the seeds of the Coffea plant. "
        "It contains caffeine, a stimulant. Ethiopia is believed to be where coffee was first found.",
    ),
    (
        "tides",
        "Ocean tides",
        "Ocean tides are the regular rise and fall of sea level. They are caused mainly by the "
        "gravitational pull of the Moon. Most coasts see two high tides each day.",
    ),
    (
        "bicycle",
        "Bicycles",
        "A bicycle is a human-powered vehicle with two wheels attached to a frame. The rider pushes "
        "pedals that turn a chain. Gears let the cyclist climb hills with less effort.",
    ),
    (
        "penicillin",
        "Penicillin",
        "Penicillin was discovered by Alexander Fleming in 1928 when mould killed bacteria on a dish. "
        "It became the first widely used antibiotic. It treats infections caused by bacteria.",
    ),
    (
        "origami",
        "Origami",
        "Origami is the Japanese art of folding paper into decorative shapes. A single square sheet "
        "is folded without cuts or glue. The paper crane is a famous origami model.",
    ),
    (
        "glacier",
        "Glaciers",
        "A glacier is a large mass of ice that moves slowly over land. Glaciers form where snow "
        "accumulates for many years and compacts into ice. They carve valleys as they flow.",
    ),
    (
        "python_lang",
        "Python programming language",
        "Python is a programming language created by Guido van Rossum. It emphasises readable code "
        "with significant indentation. Python is popular for data science and scripting.",
    ),
    (
        "olympics",
        "Olympic Games",
        "The Olympic Games are an international sports competition held every four years. "
        "The modern Games began in Athens in 1896. Athletes compete for gold, silver and bronze medals.",
    ),
    (
        "sourdough",
        "Sourdough bread",
        "Sourdough bread is leavened by a starter of wild yeast and lactic acid bacteria. "
        "The starter is fed with flour and water. The bacteria give the bread its sour taste.",
    ),
    (
        "earthquake",
        "Earthquakes",
        "An earthquake is the shaking of the ground caused by the sudden movement of tectonic plates. "
        "Seismographs record the waves. The Richter scale measures an earthquake's magnitude.",
    ),
    (
        "vaccines",
        "Vaccines",
        "A vaccine trains the immune system to recognise a pathogen. It often contains a weakened or "
        "inactivated germ. Edward Jenner developed the smallpox vaccine.",
    ),
    (
        "pyramids",
        "Pyramids of Giza",
        "The pyramids of Giza were built in ancient Egypt as tombs for the pharaohs. The Great "
        "Pyramid was built for Khufu. It was the tallest man-made structure for thousands of years.",
    ),
    (
        "rainbow",
        "Rainbows",
        "A rainbow appears when sunlight is refracted and reflected inside raindrops. The light "
        "splits into a spectrum of colours. Red is on the outside of the arc and violet inside.",
    ),
    (
        "tea",
        "Tea",
        "Tea is a beverage made by pouring hot water over the cured leaves of the Camellia sinensis "
        "shrub. It originated in China. Green tea and black tea differ in how the leaves are oxidised.",
    ),
    (
        "whales",
        "Blue whales",
        "The blue whale is the largest animal known to have ever lived. It feeds almost entirely on "
        "tiny shrimp-like krill. Its heart is as heavy as a small car.",
    ),
    (
        "internet",
        "The Internet",
        "The Internet is a global network of computers that communicate using the TCP/IP protocols. "
        "It grew out of ARPANET. The World Wide Web runs on top of it.",
    ),
    (
        "compost",
        "Composting",
        "Composting turns kitchen scraps and garden waste into rich soil. Microbes and worms break "
        "down the organic matter. A compost heap needs air and moisture.",
    ),
    (
        "lighthouse",
        "Lighthouses",
        "A lighthouse is a tower with a bright lamp that guides ships at night. It warns sailors of "
        "dangerous rocks and coastlines. The Pharos of Alexandria was an ancient lighthouse.",
    ),
    (
        "guitar",
        "Guitars",
        "The guitar is a string instrument usually with six strings. It is played by strumming or "
        "plucking the strings. Electric guitars use pickups and an amplifier.",
    ),
    (
        "solar_panel",
        "Solar panels",
        "Solar panels convert sunlight directly into electricity using photovoltaic cells made of "
        "silicon. They are mounted on roofs or in solar farms. Inverters turn their direct "
        "current into alternating current.",
    ),
    (
        "marathon",
        "Marathon running",
        "A marathon is a long-distance running race of 42.195 kilometres. It commemorates the run of "
        "a Greek messenger from Marathon to Athens. Runners train for months to finish.",
    ),
    (
        "dinosaurs",
        "Dinosaurs",
        "Dinosaurs were reptiles that dominated the land for over 160 million years. Most went "
        "extinct 66 million years ago after an asteroid impact. Birds are their living descendants.",
    ),
    (
        "cheese",
        "Cheese",
        "Cheese is made by curdling milk with rennet and draining the whey. The curds are pressed and "
        "aged. Cheddar, brie and gouda are well-known varieties.",
    ),
    (
        "telescope",
        "Telescopes",
        "A telescope gathers light to make distant objects look closer. Galileo used one to observe "
        "the moons of Jupiter. Large modern telescopes use mirrors instead of lenses.",
    ),
]


def write_corpus(root: Path) -> Path:
    """Write the TOPICS corpus under ``root/corpus`` as a mix of txt, md, html and jsonl."""
    corpus = root / "corpus"
    (corpus / "notes").mkdir(parents=True)
    (corpus / "web").mkdir()
    jsonl_lines: list[str] = []
    for i, (stem, title, text) in enumerate(TOPICS):
        kind = i % 4
        if kind == 0:
            (corpus / "notes" / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
        elif kind == 1:
            (corpus / "notes" / f"{stem}.md").write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
        elif kind == 2:
            html = f"<html><head><title>{title}</title></head><body><p>{text}</p></body></html>"
            (corpus / "web" / f"{stem}.html").write_text(html, encoding="utf-8")
        else:
            jsonl_lines.append(json.dumps({"id": stem, "title": title, "text": text}))
    (corpus / "more.jsonl").write_text("\n".join(jsonl_lines) + "\n", encoding="utf-8")
    return corpus


def build_fake_index(corpus: Path, index_dir: Path, **kwargs: object) -> dict:
    """``build_index`` with the model-free ``FakeEmbedder`` (hashing-64), no progress bar."""
    from fakes import FakeEmbedder

    from retrievers.index import build_index

    opts: dict = {"embedder": FakeEmbedder(), "embedder_name": "hashing-64", "progress": False}
    opts.update(kwargs)
    return build_index(corpus, index_dir, **opts)


def doc_id_of(stem: str) -> str:
    """The doc_id ``load_documents`` gives the TOPICS entry ``stem`` in ``write_corpus``."""
    i = next(n for n, t in enumerate(TOPICS) if t[0] == stem)
    return [f"notes/{stem}.txt", f"notes/{stem}.md", f"web/{stem}.html", stem][i % 4]


@functools.lru_cache(maxsize=1)
def minilm_embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2 (packaged weights), loaded once per test process."""
    from retrievers.dense import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")
