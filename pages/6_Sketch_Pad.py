"""Stage 6: draw or photograph a digit; see it become MNIST-style, and the class's best models answer at once.

The pad and the upload each rerun on their own (fragments); the collection's scores are computed once per change
of the collection or of the models, for the whole class."""

import time

import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from digitlab import preprocess as pp
from digitlab import ranking, ui, viz
from digitlab.collection import Collection, CollectionError, summarize

PAD, CARD = 280, 300  # the drawing pad's side and an answer card's width, in px (ui.px: 1.5x in presenter mode)
STEP = 120  # a preprocessing step's box: three a row beside the pad


def chosen_models() -> list:
    """The models that answer, as (model, info): the class's best of each kind unless the student picks others."""
    infos = ui.choose_models("Models that answer", key="sketch_models", dataset="mnist")
    return [m for m in (ui.load_model(i.id) for i in infos) if m is not None]


def ten_class_models() -> list:
    """Every stored ten-digit MNIST model that loads and is not broken: they score the class collection."""
    infos = [i for i in ui.dataset_models("mnist") if not i.config.pair and not i.broken]
    return [m for m in (ui.load_model(i.id) for i in infos) if m is not None]


def recommended_training(data, ten_class: list) -> None:
    """No model that knows ten digits yet: one click trains the recommended ones."""
    recommended = pp.recommended_configs()
    if not ten_class:
        st.info("No model that knows all ten digits has been trained yet. Train the recommended ones (about a minute "
                "or two on a laptop): a fast CNN, the fastai MLP and the linear 3-vs-7 model.", icon="🏋️")
        if st.button("Train the recommended models", type="primary", key="sketch_train"):
            for name, config in recommended.items():
                ui.start_training(config, data, f"sketch_job_{name}", owner="")  # the class's starter set
    for name in recommended:
        if st.session_state.get(f"sketch_job_{name}"):
            ui.training_panel(f"sketch_job_{name}")


def show_steps(result: pp.Processed, key: str) -> None:
    """Each step of the preprocessing as a small image with its name: boxes of fixed width that wrap."""
    if result.empty:
        return st.info("Draw a digit on the pad (or upload a photo): nothing to guess at yet.", icon="✏️")
    with st.container(horizontal=True, gap="small"):
        for n, step in enumerate(result.steps):
            with st.container(width=ui.px(STEP), gap=None, key=f"{key}_step_{n}"):
                st.image(pp.square_view(step.image), caption=step.name, width=ui.px(STEP) - 8)
                if step.note:
                    st.caption(step.note)
    st.caption("7. **normalised** as each model expects: shown under each model's answer.")
    for note in result.notes:
        st.caption(f"Note: {note}.")


def show_answers(result: pp.Processed, models: list, key: str) -> None:
    """Every chosen model's answer on a card of its own; cards wrap to the next row on a narrow screen."""
    if result.empty:
        return
    if not models:
        st.warning("No model picked to answer: add one with the picker above, or train the recommended models.")
        return
    with st.container(horizontal=True, gap="medium"):
        for a in pp.answer_all(models, result.image):
            with st.container(width=ui.px(CARD), border=True, key=f"{key}_card_{a.info.id}"):
                model_answer(a, key)
    ui.glossary("softmax", "logit", "label smoothing", "calibration")


def model_answer(a: pp.Answer, key: str) -> None:
    cfg = a.info.config
    st.markdown(f"**{a.info.title}**")
    st.metric(cfg.question if cfg.pair else "Predicted digit", a.predicted, f"{a.confidence:.0%} sure",
              delta_color="off", delta_arrow="off", help=f"Trained only on {cfg.question} Any other digit still gets "
              "one of its two answers." if cfg.pair else None)
    if cfg.pair:
        st.caption(f"Answers only its own question: **{cfg.question}**")
    ui.chart(st, viz.probability_bars(a.probs, a.labels, height=170 if cfg.pair else 290), key=f"{key}_bars_{a.info.id}",
             alt=f"{a.info.title} answers {a.predicted}, {a.confidence:.0%} sure")
    st.caption(f"{ui.confidence_note(cfg)} Input: {pp.norm_text(cfg)}")


def drawings(n: int) -> str:
    return f"{n} drawing{'s' if n != 1 else ''}"


@st.fragment
def sketch(models: list) -> None:
    """The pad with its label, Save and confirmation under it, in one view; the steps beside, the answers below.
    Nothing before the pad comes or goes (ui.sketch says why)."""
    with st.container(horizontal=True, gap="large"):
        with st.container(width=ui.px(PAD) + 8, key="draw_pad"):
            st.space(ui.toolbar_room())
            canvas = st_canvas(  # the stroke width as on a laptop's pad, scaled with the pad
                stroke_width=ui.px(ui.stroke_width()), stroke_color="#FFFFFF", background_color="#000000",
                height=ui.px(PAD), width=ui.px(PAD), drawing_mode="freedraw", return_image_data=True, key=ui.pad_key(),
            )
            result = ui.drawn(canvas)  # the pad's PNG through the one image door, with the pad's limits
            ui.save_form(None if result.empty else result.image, "canvas", "draw", caption=ui.pad_caption())
            ui.pad_controls()
        with st.container(width=3 * ui.px(STEP) + 2 * 16 + 8):  # three step images a row (16 px: a small gap)
            show_steps(result, "draw")
    show_answers(result, models, "draw")


@st.fragment
def upload(models: list) -> None:
    n = st.session_state.get("sketch_upload_n", 0)
    up = st.file_uploader("A photo or scan of one handwritten digit", type=["png", "jpg", "jpeg", "webp"],
                          key=f"sketch_upload_{n}",
                          help="Dark ink on light paper or light on dark both work. Transparent parts are filled "
                               "with the colour opposite to the ink. Up to 10 MB.")
    if up is not None:  # read once, then the box starts empty again, so the server lets the photo's bytes go
        try:
            st.session_state.sketch_upload_done = (up.name, pp.from_upload(up.getvalue()), "")
        except pp.PreprocessError as e:
            st.session_state.sketch_upload_done = (up.name, None, str(e))
        st.session_state.sketch_upload_n = n + 1
        st.rerun(scope="fragment")
    if (done := st.session_state.get("sketch_upload_done")) is None:
        return
    name, result, problem = done
    st.caption(f"Read from `{name.replace('`', '')[:80]}`. Upload another photo to replace it.")
    if problem:
        st.error(problem)
    else:
        show_steps(result, "upload")
        show_answers(result, models, "upload")
        ui.save_form(result.image, "upload", "upload")


@st.cache_resource(max_entries=16, show_spinner=False)
def collection_scores(version: tuple, model_ids: tuple[str, ...], _models: list):
    """The collection scored by every ten-class model: once per change of either, for the whole class; while a class
    saves several drawings a second, at most a tenth of the time (ui.Throttle: the drawings per digit above them
    follow every save)."""
    started = time.perf_counter()
    summary = summarize(Collection(), _models)
    scores_throttle().spent(time.perf_counter() - started)
    return summary


@st.cache_resource
def scores_throttle() -> ui.Throttle:
    return ui.Throttle()


def class_collection(ten_class: list) -> None:
    st.header("The class collection")
    try:  # a database that cannot be reached: say so; the pad above still answers
        counts = Collection().counts()
        summary = collection_scores(scores_throttle().take(Collection().version()), tuple(i.id for _, i in ten_class),
                                    ten_class)
    except CollectionError as e:
        return st.error(f"The class collection cannot be opened: {e}")
    if not sum(counts):
        return st.caption("Nothing saved yet. Draw a digit, pick its true label and save it: the class builds its "
                          "own test set.")
    c1, c2 = st.columns([1, 2])
    ui.chart(c1, ui.shared_figure(("collection counts", *counts), viz.class_counts, counts, names=("drawings",),
                                  height=240), key="collection_counts")
    c2.markdown(f"**{drawings(sum(counts))}.** How each ten-class model does on the class's own handwriting"
                + (f" (scored on the first {summary.size}; the newest are scored in a moment):"
                   if summary.size < sum(counts) else ":"))
    if summary.scores:
        rows = [{**row, "model": info.title} for (_, info), row in zip(ten_class, summary.scores)]
        c2.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={"accuracy on the collection": st.column_config.NumberColumn(format="percent"),
                                    "MNIST test accuracy": st.column_config.NumberColumn(format="percent")})


data = ui.page_setup(
    "Sketch Pad",
    "✏️",
    "Draw a digit (mouse, finger or pen) or upload a photo of one on paper. It goes through the same steps that made "
    "MNIST: **grayscale, light ink on black, crop to the ink, longer side 20 px, centred by its centre of mass in "
    "28x28**. Then the class's best model of each kind answers at once (pick others below).",
)
ui.store_problems()
digits, ten_class = ui.mnist_only(data), ten_class_models()
recommended_training(digits, ten_class)
models = chosen_models()
draw_tab, upload_tab = st.tabs(["✏️ Draw", "📷 Upload a photo"])
with draw_tab:
    sketch(models)
with upload_tab:
    upload(models)
class_collection(ten_class)
ui.take_home(ranking.ranked([info for _, info in models]), "pad")  # the best first
ui.show_code(pp.to_mnist, pp.answer)
