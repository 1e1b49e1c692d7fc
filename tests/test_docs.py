"""The front page and the lab notebook: the README stays short with its two commands on the first screen, every link
lands on a file and a heading that exist, every image is there, and every result table keeps its command."""
import os
import re

import pytest

from conftest import ROOT

PAGES = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                               if f.endswith(".md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def read(page):
    return open(os.path.join(ROOT, page), encoding="utf-8").read()


def outside_code(text):
    """The text with fenced code blocks blanked out (a '#' there is a comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script, digits, '_', '-' and
    spaces kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", outside_code(read(page)), flags=re.M):
        s = slug(heading)
        found.add(s if s not in seen else f"{s}-{seen[s]}")  # GitHub numbers repeated headings
        seen[s] = seen.get(s, 0) + 1
    return found


def test_slug_follows_githubs_rules():
    assert slug("Measuring: bench.py, analyze.py and plots") == "measuring-benchpy-analyzepy-and-plots"
    assert slug("Before renting GPUs: what has been checked on a CPU") == \
        "before-renting-gpus-what-has-been-checked-on-a-cpu"
    assert slug("Inside the models: anisotropy and δ-hyperbolicity") == \
        "inside-the-models-anisotropy-and-δ-hyperbolicity"


def test_readme_is_a_front_page():
    text = read("README.md")
    assert len(text.encode("utf-8")) <= 16 * 1024
    first_screen = "\n".join(text.splitlines()[:25])
    assert "pip install torch==2.13.0 && pip install -r requirements.txt" in first_screen
    assert "python train.py" in first_screen and "python sample.py" in first_screen
    assert "python -m pytest -q" in first_screen


def test_ci_runs_the_readmes_test_command():
    ci = read(".ci/run")
    assert "pip install -q torch==2.13.0" in ci and "pip install -q -r requirements.txt" in ci
    assert ci.rstrip().splitlines()[-1] == "python -m pytest -q"


@pytest.mark.parametrize("page", PAGES)
def test_every_link_and_image_resolves(page):
    links = LINK.findall(outside_code(read(page)))
    assert links or page != "README.md"
    for target in links:
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        assert os.path.exists(os.path.join(ROOT, resolved)), f"{page}: {target} → {resolved} does not exist"
        if anchor:
            assert resolved.endswith(".md"), f"{page}: {target}: an anchor into a file that is not markdown"
            assert anchor in anchors(resolved), f"{page}: {target}: no heading '#{anchor}' in {resolved}"


def test_every_result_table_keeps_its_command():
    """In the notebook, every section (### or ####) that holds a table of numbers also holds the command that made
    it, in a bash block."""
    text = read("docs/results.md")
    sections = re.split(r"^(?=#{2,4} )", text, flags=re.M)
    checked = 0
    for section in sections:
        has_table = re.search(r"^\|.*\d.*\|$", outside_code(section), flags=re.M)
        if has_table and section.startswith(("### ", "#### ")):
            checked += 1
            assert "```bash" in section, section.splitlines()[0]
    assert checked >= 8


def test_the_torch_promise_is_the_version_the_suite_runs_on():
    """requirements.txt and the README promise the torch that CI installs and the suite runs on, nothing wider."""
    import torch

    assert [line for line in read("requirements.txt").splitlines() if line.startswith("torch")] == ["torch==2.13.*"]
    assert torch.__version__.startswith("2.13.")
    assert "≥ 2.4" not in read("README.md") and "torch 2.13" in read("README.md")
