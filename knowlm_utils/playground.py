"""An information-extraction playground for JupyterLab (notebook 10): ipywidgets around
:class:`~knowlm_utils.generation.Generator`.

Pick a task (NER, RE, EE or ``free``), a language and the schema (entity types, relations, event
types with their roles); the instruction is written with notebook 06's templates — the IEPile JSON
style notebook 07 trained on, or a KG2Instruction text template with one of its output formats —
and stays editable. Choose a decoding preset (:data:`~knowlm_utils.generation.PRESETS`) or move the
sliders, press **Generate**: the answer streams into a text box, is parsed with notebook 06's parser
(:func:`~knowlm_utils.ie.formats.parse_output`) into a table, and the run is added to the history.

The logic is plain functions, tested without widgets: :func:`parse_schema`, :func:`build_instruction`,
:func:`params_from_controls`, :func:`answer_rows`, :func:`rows_html`. :class:`Playground` only wires
them to widgets. Every result lands in a widget's ``value`` (``HTML``/``Textarea``), so a test reads
it without a browser or kernel; bad values (an empty instruction, a temperature of 0, beams with
sampling …) put one line in the message widget, never a traceback. Widgets carry CSS classes
(``knowlm-input``, ``knowlm-generate``, ``knowlm-table`` …) that a browser test locates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .generation import PRESET_HELP, PRESETS, TEMPLATE_AUTO, Generation, GenerationParams, template_names
from .ie.annotation import LANGS, TASKS, Entity, Event, Relation
from .ie.formats import TEXT_FORMATS, ParseResult, iepile_instruction, parse_output

PLAYGROUND_TASKS = (*TASKS, "free")
STYLES = ("iepile", "text")
COLUMNS = {"NER": ("entity", "type"), "RE": ("head", "relation", "tail"), "EE": ("trigger", "event type", "arguments")}
#: the schema a fresh playground starts with (sample-world labels, as notebook 06 wrote them)
DEFAULT_SCHEMA = {
    ("NER", "zh"): "人物\n城市\n国家\n河流", ("NER", "en"): "person\ncity\ncountry\nriver",
    ("RE", "zh"): "首都\n位于\n流经\n接壤", ("RE", "en"): "capital\nlocated in\nflows through\nshares border with",
    ("EE", "zh"): "出生: 时间, 地点\n任职: 人物, 公司, 职位", ("EE", "en"): "birth: time, place\nappointment: person, company, position",
}

#: example cases (sentences in the sample world's manner)
EXAMPLES: list[dict[str, Any]] = [
    {"name": "NER · zh · cities and countries", "task": "NER", "lang": "zh",
     "schema": "城市\n国家\n河流", "input": "阿姆斯特丹是荷兰的首都，莱茵河流经荷兰。"},
    {"name": "RE · zh · capital and rivers", "task": "RE", "lang": "zh",
     "schema": "首都\n流经\n接壤", "input": "柏林是德国的首都。多瑙河流经德国，德国与法国接壤。"},
    {"name": "NER · en · places", "task": "NER", "lang": "en",
     "schema": "city\ncountry\nriver", "input": "Amsterdam is a city in Netherlands. Rhine flows through Netherlands."},
    {"name": "RE · en · borders", "task": "RE", "lang": "en",
     "schema": "capital\nshares border with\nflows through", "input": "Germany shares a border with France. Germany has its capital at Berlin."},
    {"name": "EE · zh · a birth", "task": "EE", "lang": "zh",
     "schema": "出生: 时间, 地点", "input": "张三于1990年出生在北京。"},
    {"name": "free · en · continue a text", "task": "free", "lang": "en", "schema": "",
     "input": "", "instruction": "Write one sentence about the Rhine.", "preset": "creative"},
]


# ============================================================================ schema & prompts ==
@dataclasses.dataclass(frozen=True)
class Schema:
    """The labels of one task: entity types (NER), relations (RE) or event types (EE, with roles)."""

    task: str
    labels: tuple[str, ...]
    roles: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # EE: event type → roles


def parse_schema(task: str, text: str) -> Schema:
    """The schema editor's text: one label per line (commas or ``、`` also separate labels);
    EE lines are ``event type: role, role`` (roles optional). Blank lines are skipped; a
    repeated label or an empty role is a one-line ``ValueError`` naming the line."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}: a schema belongs to NER, RE or EE")
    labels: list[str] = []
    roles: dict[str, tuple[str, ...]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if task == "EE":
            head, sep, rest = line.replace("：", ":").partition(":")
            names = [head.strip()]
            found = tuple(r.strip() for r in rest.replace("，", ",").replace("、", ",").split(",")) if sep else ()
            if any(not r for r in found):
                raise ValueError(f"schema line {n}: an empty role in {line!r} (write 'event type: role, role')")
            if len(set(found)) != len(found):
                raise ValueError(f"schema line {n}: a role repeats in {line!r}")
        else:
            names = [x.strip() for x in line.replace("，", ",").replace("、", ",").split(",")]
            found = ()
        for name in names:
            if not name:
                raise ValueError(f"schema line {n}: an empty label in {line!r}")
            if name in labels:
                raise ValueError(f"schema line {n}: {name!r} is listed twice")
            labels.append(name)
            if task == "EE":
                roles[name] = found
    if not labels:
        raise ValueError(f"schema: no {'entity type' if task == 'NER' else 'relation' if task == 'RE' else 'event type'}"
                         " given (one per line)")
    return Schema(task, tuple(labels), roles)


def schema_phrasings(task: str, lang: str) -> list[str]:
    """The text style's schema templates (notebook 06's ``instruction_templates.yaml``) of a task
    and language, in file order: the choices of :func:`build_instruction`'s ``phrasing``."""
    from .kg2instruction.instructions import default_templates

    return [t.text for t in default_templates().instructions[task, lang] if not t.open]


def build_instruction(task: str, lang: str, style: str, schema: Schema, text: str, fmt: str = "tuple",
                      phrasing: int = 0) -> tuple[str, str]:
    """``(instruction, input)`` for an IE task, as notebook 06 writes records: ``iepile`` → the JSON
    string ``{instruction, schema, input}`` holding the text (``input`` empty); ``text`` → the
    ``phrasing``-th schema template filled with the labels and the description of output format
    ``fmt`` (the text goes in ``input``)."""
    from .kg2instruction.instructions import default_templates, schema_text

    if task not in TASKS or schema.task != task:
        raise ValueError(f"task {task!r}: the IE instruction needs NER, RE or EE and a schema of that task")
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}: allowed {', '.join(LANGS)}")
    if not text.strip():
        raise ValueError("input: the text to analyse is empty")
    if style == "iepile":
        return iepile_instruction(task, lang, list(schema.labels), text), ""
    if style != "text":
        raise ValueError(f"style {style!r}: allowed {', '.join(STYLES)}")
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"output format {fmt!r}: the text style writes {', '.join(TEXT_FORMATS)}")
    templates = [t for t in default_templates().instructions[task, lang] if not t.open]
    if not 0 <= phrasing < len(templates):
        raise ValueError(f"phrasing {phrasing}: {task}.{lang} has schema templates 0-{len(templates) - 1}")
    description = default_templates().formats[task, lang][fmt]
    return templates[phrasing].fill(schema_text(schema.labels, lang), description), text


def prompt_template_for(task: str, style: str, lang: str, choice: str = TEMPLATE_AUTO) -> str:
    """The prompt template key :func:`~knowlm_utils.generation.build_prompt` gets: ``auto`` means the
    one notebook 07 trained the style with (``iepile`` → the run's IEPile template, text style →
    the language's), free text → by the text's language; any other ``choice`` is used as it is."""
    if choice != TEMPLATE_AUTO:
        return choice
    if task == "free":
        return TEMPLATE_AUTO
    return "iepile" if style == "iepile" else lang


# ================================================================================ parameters ==
_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def params_from_controls(preset: str, *, max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                         top_p: float, num_beams: int, repetition_penalty: float = 1.0, stop: str = "",
                         seed: int | None = 0) -> GenerationParams:
    """:class:`GenerationParams` from the sliders: ``preset`` with every control's value. The
    sampling sliders are passed only with sampling on (greedy and beams ignore them: KnowLM's
    scripts set temperature and top_p without ``do_sample``, so they never acted). ``stop``: stop
    strings separated by ``|`` (``\\n`` spells a newline). Impossible values raise a one-line
    ``ValueError`` naming the parameter."""
    stops = [s.replace("\\n", "\n") for s in stop.split("|") if s] if stop else []
    values: dict[str, Any] = dict(preset=preset, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                  num_beams=num_beams, repetition_penalty=repetition_penalty, stop=stops, seed=seed)
    if do_sample:
        values.update(temperature=temperature, top_k=top_k, top_p=top_p)
    else:
        values.update(temperature=None, top_k=None, top_p=None)
    return GenerationParams.from_mapping(values, where="decoding")


def controls_for_preset(name: str) -> dict[str, Any]:
    """The slider values that show preset ``name`` (sampling sliders at their neutral values
    when the preset does not sample); the token budget is left as it is."""
    p = PRESETS[name]
    out = {k: getattr(p, k) for k in ("do_sample", "num_beams", "repetition_penalty")}
    out.update({k: getattr(p, k) if getattr(p, k) is not None else v for k, v in _SAMPLING_DEFAULTS.items()})
    return out


# =================================================================================== results ==
def item_row(task: str, item: Entity | Relation | Event) -> tuple[str, ...]:
    """One table row of a parsed item (EE arguments as ``text#role; …``)."""
    if task == "NER":
        return (item.text, item.type)
    if task == "RE":
        return (item.head, item.relation, item.tail)
    return (item.trigger, item.type, "; ".join(f"{a.text}#{a.role}" for a in item.arguments))


def answer_rows(task: str, style: str, fmt: str, answer: str, lang: str,
                schema: Schema | None = None) -> tuple[tuple[str, ...], list[tuple[str, ...]], ParseResult]:
    """``(columns, rows, parse result)`` of a model's answer: notebook 06's parser for the style's
    format (``iepile`` JSON or the text format ``fmt``), one row per item, in the parser's order."""
    fmt = "iepile" if style == "iepile" else fmt
    labels = list(schema.labels) if schema is not None else None
    res = parse_output(task, fmt, answer, lang, labels)
    return COLUMNS[task], [item_row(task, it) for it in res.items], res


def rows_html(columns: Sequence[str], rows: Sequence[Sequence[str]], css: str = "knowlm-rows") -> str:
    """An HTML table (every cell escaped); a line saying so when there is no row."""
    if not rows:
        return f'<p class="{css}-empty">no items</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    style = (f"<style>.{css} {{border-collapse: collapse}} .{css} td, .{css} th {{border: 1px solid #bbb; "
             "padding: 2px 8px; text-align: left}</style>")
    return f'{style}<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def message_html(text: str, kind: str = "error") -> str:
    """The message widget's content: ``kind`` is error, warning or info."""
    colour = {"error": "#b00020", "warning": "#8a6d00", "info": "#333"}[kind]
    return f'<div class="knowlm-msg-{kind}" style="color:{colour}">{html.escape(text)}</div>'


def history_html(runs: Sequence[Mapping[str, Any]]) -> str:
    """The history table, latest run first."""
    cols = ("#", "task", "decoding", "finish", "tokens", "tok/s", "rows", "answer")
    rows = [(r["run"], r["task"], r["decoding"], r["finish"], r["tokens"], f"{r['tokens_per_s']:.1f}",
             "" if r["rows"] is None else r["rows"], r["answer"][:80]) for r in reversed(runs)]
    return rows_html(cols, rows, css="knowlm-history")


# ==================================================================================== widgets ==
class Playground:
    """The widget UI around a :class:`~knowlm_utils.generation.Generator` (``.ui`` is what a
    notebook displays). ``background``: generate in a thread (the browser stays responsive and
    **Stop** works; :meth:`wait` joins it) or in the click itself. Readable results:
    ``message.value``, ``output.value`` (the streamed answer), ``table.value`` and :attr:`rows`,
    ``history_box.value`` and :attr:`history`."""

    def __init__(self, generator: Any, examples: Sequence[Mapping[str, Any]] = EXAMPLES, *, task: str = "NER",
                 lang: str = "zh", style: str = "iepile", fmt: str = "tuple", preset: str = "ie", max_new_tokens: int = 128,
                 background: bool = True):
        import ipywidgets as w

        self.generator, self.examples, self.background = generator, list(examples), background
        self.history: list[dict[str, Any]] = []
        self.rows: list[tuple[str, ...]] = []
        self.last: Generation | None = None
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._quiet = 0      # > 0 while settings change together: no rebuild per widget
        wide = w.Layout(width="100%")
        # ---- IE settings
        self.task = w.Dropdown(options=PLAYGROUND_TASKS, value=task, description="task")
        self.lang = w.Dropdown(options=LANGS, value=lang, description="language")
        self.style = w.Dropdown(options=[("IEPile JSON (notebook 07)", "iepile"), ("KG2Instruction text", "text")],
                                value=style, description="style")
        self.fmt = w.Dropdown(options=TEXT_FORMATS, value=fmt, description="format")
        self.phrasing = w.Dropdown(description="phrasing", layout=wide)
        self.schema = w.Textarea(description="schema", layout=w.Layout(width="100%", height="90px"),
                                 placeholder="one label per line; EE: event type: role, role")
        self.instruction = w.Textarea(description="instruction", layout=w.Layout(width="100%", height="110px"))
        self.input = w.Textarea(description="input", layout=w.Layout(width="100%", height="70px"),
                                placeholder="the text to analyse")
        self.template = w.Dropdown(options=template_names(generator.prompts), value=TEMPLATE_AUTO,
                                   description="prompt")
        self.example = w.Dropdown(options=[("choose an example …", -1)] + [(e["name"], i) for i, e in
                                                                           enumerate(self.examples)],
                                  value=-1, description="example")
        # ---- decoding
        self.preset = w.Dropdown(options=list(PRESETS), value=preset, description="preset")
        self.preset_help = w.HTML()
        self.max_new_tokens = w.IntSlider(value=max_new_tokens, min=1, max=512, description="max tokens")
        self.do_sample = w.Checkbox(value=False, description="sample (do_sample)")
        self.temperature = w.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature")
        self.top_k = w.IntSlider(value=0, min=0, max=200, description="top_k")
        self.top_p = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.01, description="top_p")
        self.num_beams = w.IntSlider(value=1, min=1, max=8, description="beams")
        self.repetition_penalty = w.FloatSlider(value=1.0, min=0.5, max=2.0, step=0.05, description="repetition")
        self.stop = w.Text(value="", description="stop", placeholder="stop strings, separated by |")
        self.seed = w.IntText(value=0, description="seed")
        # ---- actions and results
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.message = w.HTML()
        self.output = w.Textarea(description="answer", layout=w.Layout(width="100%", height="90px"), disabled=True)
        self.table = w.HTML()
        self.history_box = w.HTML(value=history_html([]))
        for widget, css in ((self.task, "task"), (self.lang, "lang"), (self.style, "style"), (self.fmt, "format"),
                            (self.schema, "schema"), (self.instruction, "instruction"), (self.input, "input"),
                            (self.preset, "preset"), (self.generate_button, "generate"), (self.stop_button, "stop"),
                            (self.message, "message"), (self.output, "output"), (self.table, "table"),
                            (self.history_box, "history"), (self.example, "example"), (self.do_sample, "sample"),
                            (self.temperature, "temperature"), (self.max_new_tokens, "max-tokens")):
            widget.add_class(f"knowlm-{css}")
        self.ui = w.VBox([
            w.HTML("<b>Information extraction</b>"), self.example, w.HBox([self.task, self.lang]),
            w.HBox([self.style, self.fmt]), self.phrasing, self.schema, self.input, self.instruction, self.template,
            w.HTML("<b>Decoding</b>"), w.HBox([self.preset, self.preset_help]),
            w.HBox([self.max_new_tokens, self.num_beams]), w.HBox([self.do_sample, self.seed]),
            w.HBox([self.temperature, self.top_k, self.top_p]), w.HBox([self.repetition_penalty, self.stop]),
            w.HBox([self.generate_button, self.stop_button]), self.message, self.output, self.table,
            w.HTML("<b>History</b>"), self.history_box])
        self.ui.add_class("knowlm-playground")
        # ---- wiring
        self.generate_button.on_click(lambda _b: self.generate())
        self.stop_button.on_click(lambda _b: self.cancel())
        self.preset.observe(lambda ch: self.apply_preset(ch["new"]), names="value")
        self.do_sample.observe(lambda ch: self._sampling_enabled(), names="value")
        self.example.observe(lambda ch: self.load_example(ch["new"]), names="value")
        for widget in (self.task, self.lang):  # another task or language: its own schema
            widget.observe(lambda ch: self._settings_changed(new_schema=True), names="value")
        for widget in (self.style, self.fmt):
            widget.observe(lambda ch: self._settings_changed(), names="value")
        for widget in (self.phrasing, self.schema, self.input):
            widget.observe(lambda ch: self.rebuild(), names="value")
        self.apply_preset(preset)
        self._settings_changed(new_schema=True)

    # ------------------------------------------------------------------ IE settings --
    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Change several settings with one rebuild at the end."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1
        self.rebuild()

    def _settings_changed(self, new_schema: bool = False) -> None:
        task, lang = self.task.value, self.lang.value
        with self._batch():
            ie = task != "free"
            self.style.disabled = self.schema.disabled = self.phrasing.disabled = not ie
            self.fmt.disabled = not ie or self.style.value == "iepile"
            if ie:
                self.phrasing.options = [(f"{i}: {t[:70]}", i) for i, t in enumerate(schema_phrasings(task, lang))]
                self.phrasing.value = 0
                if new_schema or not self.schema.value.strip():
                    self.schema.value = DEFAULT_SCHEMA[task, lang]

    def rebuild(self) -> None:
        """Write the instruction from the IE settings, the schema and the input (free task: left
        as the user wrote it). An incomplete setting leaves the instruction as it is and says why."""
        if self._quiet:
            return
        if self.task.value == "free":
            self.message.value = ""
            return
        try:
            schema = parse_schema(self.task.value, self.schema.value)
            if not self.input.value.strip():
                self.message.value = message_html("type the text to analyse into input", "info")
                return
            instruction, _ = build_instruction(self.task.value, self.lang.value, self.style.value, schema,
                                               self.input.value, self.fmt.value, self.phrasing.value or 0)
        except ValueError as exc:
            self.message.value = message_html(str(exc))
            return
        self.instruction.value = instruction
        self.message.value = ""

    def load_example(self, index: int) -> None:
        """Fill the settings, schema, input (and preset) from example case ``index``."""
        if index is None or index < 0:
            return
        ex = self.examples[index]
        with self._batch():
            self.task.value, self.lang.value = ex["task"], ex["lang"]
            self.schema.value = ex.get("schema", "")
            self.input.value = ex.get("input", "")
            if ex["task"] == "free":
                self.instruction.value = ex.get("instruction", "")
            self.preset.value = ex.get("preset", self.preset.value)

    # ------------------------------------------------------------------ decoding --
    def apply_preset(self, name: str) -> None:
        values = controls_for_preset(name)
        for key, value in values.items():
            getattr(self, key).value = value
        self.preset_help.value = f"<i>{html.escape(PRESET_HELP.get(name, ''))}</i>"
        self._sampling_enabled()

    def _sampling_enabled(self) -> None:
        for widget in (self.temperature, self.top_k, self.top_p):
            widget.disabled = not self.do_sample.value

    def params(self) -> GenerationParams:
        return params_from_controls(self.preset.value, max_new_tokens=self.max_new_tokens.value,
                                    do_sample=self.do_sample.value, temperature=self.temperature.value,
                                    top_k=self.top_k.value, top_p=self.top_p.value, num_beams=self.num_beams.value,
                                    repetition_penalty=self.repetition_penalty.value, stop=self.stop.value,
                                    seed=self.seed.value)

    # ------------------------------------------------------------------ generating --
    def prepare(self) -> tuple[str, str, str, GenerationParams, Schema | None]:
        """What a click generates from: ``(instruction, input, template, params, schema)``; a bad
        value raises a one-line ``ValueError``."""
        task, style = self.task.value, self.style.value
        instruction = self.instruction.value
        if not instruction.strip():
            raise ValueError("instruction: required (write what the model should do)" if task == "free" else
                             "instruction: required (type the text to analyse into input to build it)")
        schema = parse_schema(task, self.schema.value) if task != "free" else None
        text = "" if (task != "free" and style == "iepile") else self.input.value  # iepile: inside the JSON
        template = prompt_template_for(task, style, self.lang.value, self.template.value)
        params = self.params()
        self.generator.prompt_for(instruction, text, template)  # an unknown template fails here
        return instruction, text, template, params, schema

    def generate(self) -> bool:
        """Start one generation (the Generate button); False when a value is bad (the message
        says which) or a generation is running."""
        if self._thread is not None and self._thread.is_alive():
            self.message.value = message_html("a generation is running; press Stop or wait", "warning")
            return False
        try:
            job = self.prepare()
        except ValueError as exc:
            self.message.value = message_html(str(exc))
            return False
        self.message.value = message_html("generating …", "info")
        self.output.value, self.table.value, self.rows = "", "", []
        self._cancel = threading.Event()
        self.generate_button.disabled, self.stop_button.disabled = True, False
        if self.background:
            self._thread = threading.Thread(target=self._run, args=job, name="knowlm-playground", daemon=True)
            self._thread.start()
        else:
            self._run(*job)
        return True

    def _run(self, instruction: str, text: str, template: str, params: GenerationParams,
             schema: Schema | None) -> None:
        task, style, fmt, lang = self.task.value, self.style.value, self.fmt.value, self.lang.value
        try:
            chunks: list[str] = []

            def on_text(chunk: str) -> None:
                chunks.append(chunk)
                self.output.value = "".join(chunks)

            g = self.generator.instruct(instruction, text, template, params, on_text=on_text, cancel=self._cancel,
                                        emit_warnings=False)
            self.last = g
            self.output.value = g.text
            rows = None
            if task != "free":
                columns, found, res = answer_rows(task, style, fmt, g.text, lang, schema)
                self.rows, rows = found, len(found)
                self.table.value = rows_html(columns, found)
                if res.unparsed:
                    g = dataclasses.replace(g, warnings=(*g.warnings, f"{len(res.unparsed)} fragment(s) not "
                                                         f"parsed, first: {res.unparsed[0][:80]!r}"))
            self.history.append({"run": len(self.history) + 1, "time": time.strftime("%H:%M:%S"), "task": task,
                                 "decoding": params.summary(), "finish": g.finish_reason, "tokens": g.new_tokens,
                                 "tokens_per_s": g.tokens_per_s, "rows": rows, "answer": g.text,
                                 "instruction": instruction, "input": text})
            self.history_box.value = history_html(self.history)
            done = f"{g.finish_reason}: {g.new_tokens} tokens in {g.seconds:.2f} s ({g.tokens_per_s:.1f} tokens/s)"
            if g.finish_reason == "length":
                done += "; cut by max tokens (raise it for a complete answer)"
            notes = "; ".join(g.warnings)
            self.message.value = message_html(done + (f". Note: {notes}" if notes else ""),
                                              "warning" if notes or g.finish_reason == "length" else "info")
        except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
            self.message.value = message_html(f"generation failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
        finally:
            self.generate_button.disabled, self.stop_button.disabled = False, True

    def cancel(self) -> None:
        """Stop the running generation after the current token (the Stop button)."""
        if self._cancel is not None:
            self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background generation; True when none is running any more."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def set(self, **values: Any) -> "Playground":
        """Set widget values by name (``pg.set(task="RE", input="…")``), in the order given."""
        for name, value in values.items():
            getattr(self, name).value = value
        return self

    def _ipython_display_(self) -> None:  # ``pg`` as a cell's last line shows the UI
        from IPython.display import display

        display(self.ui)


def rows_for(task: str, style: str, fmt: str, answer: str, lang: str, schema_text_: str) -> list[tuple[str, ...]]:
    """The rows :class:`Playground` shows for ``answer`` (what a test compares a browser's table with)."""
    schema = parse_schema(task, schema_text_) if task in TASKS else None
    return answer_rows(task, style, fmt, answer, lang, schema)[1]


def describe(pg: Playground) -> dict[str, Any]:
    """The playground's visible state as plain data (instruction, answer, rows, message text)."""
    return {"instruction": pg.instruction.value, "answer": pg.output.value, "rows": list(pg.rows),
            "message": html.unescape(re.sub(r"<[^>]+>", "", pg.message.value)), "runs": len(pg.history)}


__all__ = ["PLAYGROUND_TASKS", "STYLES", "COLUMNS", "EXAMPLES", "DEFAULT_SCHEMA", "Schema", "parse_schema",
           "schema_phrasings", "build_instruction", "prompt_template_for", "params_from_controls",
           "controls_for_preset", "item_row", "answer_rows", "rows_html", "message_html", "history_html",
           "Playground", "rows_for", "describe"]
