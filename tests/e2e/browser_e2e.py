"""The playground in a real browser (``make e2e``): Debian's chromium, driven by Playwright, opens
``playground_app.ipynb`` in JupyterLab (runs its cells through the Run menu) and then as a Voilà
app; it types a sentence, clicks Generate and reads the table. The expected rows are computed here
in Python from the same model folder: the instruction built by the playground's functions for the
typed sentence, greedy generation through the same Generator, notebook 06's parser. Screenshots go
to ``runs/e2e/``."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from e2e_model import ANSWER, SCHEMA, TEXT
from e2e_support import (TOKEN, app_dir, browser, jupyter_env, lab, model_dir, page,  # noqa: F401 - fixtures
                         screenshots, voila)


@pytest.fixture(scope="module")
def expected(model_dir):
    """What the browser must show for TEXT: the instruction, the answer and the table rows."""
    from knowlm_utils.generation import Generator
    from knowlm_utils.playground import answer_rows, build_instruction, params_from_controls, parse_schema

    gen = Generator.load(model_dir, device="cpu")
    schema = parse_schema("NER", SCHEMA)
    instruction, input_text = build_instruction("NER", "zh", "text", schema, TEXT, "grouped", 0)
    params = params_from_controls("ie", max_new_tokens=32, do_sample=False, temperature=1.0, top_k=0, top_p=1.0,
                                  num_beams=1)
    g = gen.instruct(instruction, input_text, "zh", params)
    _, rows, res = answer_rows("NER", "text", "grouped", g.text, "zh", schema)
    assert g.text == ANSWER and g.finish_reason == "eos" and res.ok and len(rows) == 2
    return {"instruction": instruction, "answer": g.text, "rows": [list(r) for r in rows]}


def use_playground(page, shots, name: str) -> dict:
    """Type TEXT, click Generate, wait for the table; returns what the page shows."""
    page.locator(".knowlm-generate").wait_for(state="attached", timeout=600_000)   # kernel start, imports, model
    page.locator(".knowlm-playground").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / f"{name}-1-loaded.png"))
    box = page.locator(".knowlm-input textarea")
    box.click()
    box.press_sequentially(TEXT, delay=20)          # typed key by key, as a person would
    box.press("Tab")                                # leave the box: its value is synced
    instruction = page.locator(".knowlm-instruction textarea")
    page.wait_for_function("t => document.querySelector('.knowlm-instruction textarea').value.length > 0 && "
                           "document.querySelector('.knowlm-input textarea').value === t", arg=TEXT)
    page.locator(".knowlm-generate").click()
    rows = page.locator(".knowlm-table table tbody tr")
    rows.first.wait_for(state="visible", timeout=300_000)
    page.locator(".knowlm-table").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / f"{name}-2-result.png"), full_page=True)
    shown = {"instruction": instruction.input_value(),
             "answer": page.locator(".knowlm-output textarea").input_value(),
             "rows": rows.evaluate_all("rs => rs.map(r => Array.from(r.cells, c => c.textContent))"),
             "message": page.locator(".knowlm-message").inner_text(),
             "history": page.locator(".knowlm-history table tbody tr").count()}
    # a bad value: free text with an empty instruction gives a message, not a traceback
    page.locator(".knowlm-task select").select_option("free")
    instruction.fill("")
    instruction.press("Tab")
    page.wait_for_function("() => document.querySelector('.knowlm-instruction textarea').value === ''")
    page.locator(".knowlm-generate").click()
    error = page.locator(".knowlm-msg-error")
    error.wait_for(state="visible")
    page.screenshot(path=str(shots / f"{name}-3-bad-input.png"), full_page=True)
    shown["error"] = error.inner_text()
    shown["runs_after_error"] = page.locator(".knowlm-history table tbody tr").count()
    return shown


def check(shown: dict, expected: dict) -> None:
    assert shown["rows"] == expected["rows"] == [["北京", "城市"], ["上海", "城市"]]
    assert shown["instruction"] == expected["instruction"]   # rebuilt in the kernel from what was typed
    assert shown["answer"] == expected["answer"]
    assert shown["message"].startswith("eos: ") and "tokens/s" in shown["message"]
    assert shown["history"] == 1
    assert shown["error"].startswith("instruction: required") and "Traceback" not in shown["error"]
    assert shown["runs_after_error"] == 1                  # nothing was generated


def test_kernelspec_is_this_venv(lab):
    with urllib.request.urlopen(f"{lab.url}/api/kernelspecs?token={TOKEN}") as r:
        specs = json.load(r)
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == sys.executable


def test_jupyterlab(lab, page, screenshots, expected):
    page.goto(f"{lab.url}/lab/tree/playground_app.ipynb?token={TOKEN}")
    page.locator(".jp-NotebookPanel").wait_for(state="visible")
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()   # the kernel has started
    page.screenshot(path=str(screenshots / "lab-0-opened.png"))
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("Run All Cells"))').click()
    shown = use_playground(page, screenshots, "lab")
    check(shown, expected)


def test_voila_app(voila, page, screenshots, expected):
    page.goto(f"{voila.url}/?token={TOKEN}", wait_until="commit")  # the page streams while the notebook runs
    shown = use_playground(page, screenshots, "voila")
    check(shown, expected)
    assert page.locator(".cm-editor, .CodeMirror").count() == 0   # an app: no code editor on the page
