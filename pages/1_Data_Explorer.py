"""Stage 1: look at the data before any model -- counts, samples, one image as numbers, averages, normalisation."""

import streamlit as st

from digitlab import explore, ui, viz
from digitlab.data import to_float

data = ui.page_setup(
    "Data Explorer",
    "🔍",
    "A computer sees a digit as a 28x28 grid of numbers from 0 (paper) to 255 (ink). "
    "Before training anything, look at what we have.",
)

# ---------------------------------------------------------------- 1. how many
st.header("1. How many of each digit")
train_counts, test_counts = data.class_counts("train"), data.class_counts("test")
c1, c2 = st.columns(2)
c1.metric("Training images", f"{sum(train_counts):,}")
c2.metric("Test images", f"{sum(test_counts):,}")
st.plotly_chart(viz.class_counts(train_counts, test_counts), key="counts")
st.caption("Roughly balanced: no digit is rare, so plain accuracy is a fair score.")

# ---------------------------------------------------------------- 2. random samples
st.header("2. Random samples")
split = st.radio("Split", ["train", "test"], horizontal=True, key="explore_split")
images, labels = data.split(split)
s1, s2 = st.columns([3, 1])
digit_choice = s1.selectbox("Digit", ["any", *range(10)], key="grid_digit")
if s2.button("🔀 Reshuffle", key="reshuffle"):
    st.session_state["grid_seed"] = st.session_state.get("grid_seed", 0) + 1
seed = st.session_state.get("grid_seed", 0)
picked = explore.sample_indices(labels, None if digit_choice == "any" else digit_choice, 60, seed)
st.plotly_chart(
    viz.tiled_images(explore.tile(images[picked], cols=15), title=f"60 random {split} images"
                     + ("" if digit_choice == "any" else f" of the digit {digit_choice}")),
    key="grid",
)
if digit_choice == "any":
    st.caption("Their labels, row by row: " + " ".join(str(int(x)) for x in labels[picked]))

# ---------------------------------------------------------------- 3. one image as numbers
st.header("3. One image, as numbers")
how = st.radio("Choose by", ["index", "digit"], horizontal=True, key="pick_by")
if how == "index":
    index = int(st.number_input(f"Index (0-{len(images) - 1})", 0, len(images) - 1, 0, key="pick_index"))
else:
    d1, d2 = st.columns(2)
    wanted = d1.selectbox("Digit", range(10), index=3, key="pick_digit")
    nth = int(d2.number_input("Which one of them", 0, None, 0, key="pick_nth"))
    index = explore.first_index_of(labels, wanted, nth)
image, label = images[index], int(labels[index])
st.markdown(f"**{split} image {index}**, labelled **{label}**")
h1, h2 = st.columns([1, 1])
h1.plotly_chart(viz.image_heatmap(image, title="Hover for each pixel's value", height=460), key="one")
with h2:
    st.caption("The same 784 numbers as a table, shaded as the seeds do it: `df.style.background_gradient('Greys')`")
    st.html(explore.styled_pixels(image).to_html())

st.subheader("Flattened: a row of 784 numbers")
st.markdown("A linear model or an MLP does not know which pixels are neighbours: it gets one long vector.")
st.plotly_chart(viz.vector_strip(explore.flat_vector(image), title=f"image {index} as a 784-long vector"),
                key="vector")
ui.show_code(explore.flat_vector, explore.styled_pixels)

# ---------------------------------------------------------------- 4. averages
st.header("4. The average of each digit")
st.markdown("Average every training image of a digit, pixel by pixel: the 'ideal 3' the first baseline compares to.")
st.plotly_chart(viz.tiled_images(explore.tile(data.mean_images("train"), cols=10, gap=3),
                                 title="mean image of 0, 1, ..., 9", height=200), key="means")

# ---------------------------------------------------------------- 5. pixel values
st.header("5. Pixel values")
st.plotly_chart(viz.pixel_histogram(data.pixel_histogram("train")), key="hist")
st.caption("Most pixels are paper (0), a few are full ink (255); the log scale shows the few in between.")

# ---------------------------------------------------------------- 6. normalisation
st.header("6. Raw values beside normalised ones")
stats = explore.dataset_stats(data, "train")
st.markdown(
    "**Why normalise:** networks learn fastest when inputs are small and centred on 0; raw 0-255 values make "
    "the first gradients huge. `0.1307` and `0.3081` are simply the mean and std of every training pixel "
    f"(here: mean {stats['mean']:.4f}, std {stats['std']:.4f})."
)
st.dataframe(explore.normalisation_table(image), hide_index=True, key="norm_table",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("min", "max", "mean", "std")})
n_cols = st.columns(3)
for col, name in zip(n_cols, ("none", "half", "mnist")):
    x = to_float(image.unsqueeze(0), name)[0]
    col.plotly_chart(viz.image_heatmap(x, title=explore.NORM_LABELS[name].split("  ")[0], zmin=float(x.min()),
                                       zmax=float(x.max()), height=300), key=f"norm_{name}")
ui.show_code(to_float, explore.normalisation_table)
