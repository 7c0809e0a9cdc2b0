"""Stage 1: look at the data before any model -- counts, samples, averages, pixel values, one image as numbers,
normalisation. Every picture is computed once per server (ui.shared); a widget reruns only its own section."""

import streamlit as st

from digitlab import explore, ui
from digitlab.data import to_float


def how_many(data) -> None:
    st.header(f"1. How many of each {data.spec.noun}")
    c1, c2 = st.columns(2)
    c1.metric("Training images", f"{sum(data.class_counts('train')):,}")
    c2.metric("Test images", f"{sum(data.class_counts('test')):,}")
    counts = data.class_counts("train")
    ui.chart(st, ui.shared(explore.counts_figure, data), key="counts", alt=f"Training images per {data.spec.noun}: "
             f"from {min(counts):,} ({data.classes[counts.index(min(counts))]}) to {max(counts):,} "
             f"({data.classes[counts.index(max(counts))]})")
    st.caption(f"{'Roughly balanced' if data.spec.key == 'mnist' else 'Exactly balanced'}: no {data.spec.noun} is "
               "rare, so plain accuracy is a fair score.")


@st.fragment
def random_samples(data, split: str) -> None:
    s1, s2 = st.columns([3, 1])
    digit_choice = s1.selectbox(data.spec.noun.capitalize(), ["any", *range(10)], key="grid_digit",
                                format_func=lambda d: d if d == "any" else data.classes[d])
    if s2.button("🔀 Reshuffle", key="reshuffle"):
        st.session_state["grid_seed"] = st.session_state.get("grid_seed", 0) + 1
    digit = None if digit_choice == "any" else digit_choice
    sheet, labels = ui.shared(explore.sample_sheet, data, split, digit, st.session_state.get("grid_seed", 0))
    ui.chart(st, sheet, key="grid")
    if digit is None:
        st.caption("Their labels, row by row: " + (" " if data.spec.key == "mnist" else ", ").join(labels))


def averages(data) -> None:
    st.header(f"3. The average of each {data.spec.noun}")
    st.markdown(f"Average every training image of one {data.spec.noun}, pixel by pixel: the 'ideal' images the first "
                f"baseline compares to ({explore.ideal_pair_text(data)}).")
    ui.chart(st, ui.shared(explore.means_figure, data), key="means")


def pixel_values(data) -> None:
    st.header("4. Pixel values")
    ui.chart(st, ui.shared(explore.histogram_figure, data), key="hist")
    st.caption("Most pixels are paper (0), a few are full ink (255); the log scale shows the few in between.")


def pick_image(data, split: str) -> int:
    images, labels = data.split(split)
    how = st.radio("Choose by", ["index", data.spec.noun], horizontal=True, key="pick_by")
    if how == "index":
        return int(st.number_input(f"Index (0-{len(images) - 1})", 0, len(images) - 1, 0, key="pick_index"))
    d1, d2 = st.columns(2)
    wanted = d1.selectbox(data.spec.noun.capitalize(), range(10), index=3, key="pick_digit",
                          format_func=lambda d: data.classes[d])
    nth = int(d2.number_input("Which one of them", 0, None, 0, key="pick_nth"))
    return explore.first_index_of(labels, wanted, nth)


@st.fragment
def one_image(data, split: str) -> None:
    """Sections 5 and 6 share the chosen image, so they rerun together."""
    st.header("5. One image, as numbers")
    index = pick_image(data, split)
    views = ui.shared(explore.image_views, data, split, index)
    st.markdown(f"**{split} image {index}**, labelled **{data.classes[int(data.split(split)[1][index])]}**")
    big = ui.presenting()  # on a projector the table gets the page's whole width and 18 px numbers
    h1, h2 = st.columns([1, 1]) if not big else (st.container(), st.container())
    ui.chart(h1, views["heatmap"], key="one")
    with h2:
        st.caption("The same 784 numbers as a table, shaded as the seeds do it: "
                   "`df.style.background_gradient('Greys')`")
        st.html(ui.shared(explore.pixel_table_html, data, split, index, 18) if big else views["table_html"])
    st.subheader("Flattened: a row of 784 numbers")
    st.markdown("A linear model or an MLP does not know which pixels are neighbours: it gets one long vector.")
    ui.chart(st, views["vector"], key="vector")
    ui.show_code(explore.flat_vector, explore.styled_pixels)
    normalised(data, views)


def normalised(data, views: dict) -> None:
    st.header("6. Raw values beside normalised ones")
    stats = explore.dataset_stats(data, "train")
    st.markdown(
        "**Why normalise:** networks learn fastest when inputs are small and centred on 0; raw 0-255 values make "
        "the first gradients huge. `0.1307` and `0.3081` are simply the mean and std of every MNIST training pixel "
        f"(here, on {data.spec.title}: mean {stats['mean']:.4f}, std {stats['std']:.4f})."
    )
    st.dataframe(views["norm_table"], hide_index=True, key="norm_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("min", "max", "mean", "std")})
    st.caption(explore.normalisation_note(data, views["norm_table"]))
    # Three more charts on every rerun of the page would cost more than the rest of it: drawn when asked for.
    if st.toggle("Show the image after each normalisation", key="norm_images",
                 help="The same digit three ways: its shape never changes, only the numbers (hover to read them)."):
        for col, (name, fig) in zip(st.columns(3), views["normalised"].items()):
            ui.chart(col, fig, key=f"norm_{name}")
    ui.show_code(to_float, explore.normalisation_table)


data = ui.page_setup(
    "Data Explorer",
    "🔍",
    "A computer sees an image as a 28x28 grid of numbers from 0 (paper) to 255 (ink). "
    "Before training anything, look at what we have.",
)
how_many(data)
st.header("2. Random samples")
split = st.radio("Split", ["train", "test"], horizontal=True, key="explore_split",
                 help="Which images sections 2 and 5 show: the 60,000 to train on or the 10,000 kept for testing.")
random_samples(data, split)
averages(data)
pixel_values(data)
one_image(data, split)
