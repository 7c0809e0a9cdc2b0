"""DigitLab home: the journey from raw pixels to a CNN, what data is loaded, what models exist."""

import streamlit as st

from digitlab import glossary, ranking, ui


def journey() -> None:
    st.header("The journey")
    available = set(ui.existing_stages())
    for i, stage in enumerate(ui.STAGES, start=1):
        path, title, icon, blurb = stage
        cols = st.columns([3, 7])
        if stage in available:
            cols[0].page_link(path, label=f"{i}. {title}", icon=icon)
        else:
            cols[0].markdown(f"{icon} {i}. {title} *(not installed)*")
        cols[1].markdown(blurb)


def where_things_stand(data) -> None:
    st.header(f"Where things stand on {data.spec.title}", help="Switch the dataset in the sidebar: MNIST (handwritten "
              "digits) or Fashion-MNIST (clothing and shoes, the same 28x28 format, and harder).")
    c1, c2, c3 = st.columns(3)
    c1.metric("Training images", f"{len(data.train_images):,}", help=data.source.label)
    c2.metric("Test images", f"{len(data.test_images):,}")
    c3.metric("Device", ui.device_label().split(" (")[0], help=ui.device_label())


def trained_models(data) -> None:
    infos = ui.dataset_models()
    st.subheader(f"Trained on {data.spec.title} ({len(infos)})")
    if infos:
        st.dataframe(ui.models_table(ranking.ranked(infos)), hide_index=True,
                     column_config={"test accuracy": st.column_config.NumberColumn(format="percent")})
        st.caption("Best first; ⚠️ marks a model below 50% test accuracy, which no page shows unless picked.")
        ui.take_home(ranking.ranked(infos), "home")
    else:
        st.info(f"No model trained on {data.spec.title} yet. Train one on the Linear, MLP or CNN stage; it will appear "
                "here and on every page.")
    ui.dataset_comparison()
    ui.store_problems()


def words() -> None:
    with st.expander("📖 Words the stages use"):
        st.markdown(glossary.markdown())


def home() -> None:
    data = ui.page_setup(
        "DigitLab",
        "🔢",
        "From raw pixels to a convolutional network on MNIST handwritten digits (or Fashion-MNIST's clothing: switch "
        "in the sidebar), one stage at a time. "
        "Every stage runs real PyTorch on the real data; every chart comes from what the class trains.",
    )
    journey()
    where_things_stand(data)
    trained_models(data)
    words()
    st.caption(
        "MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, under CC BY-SA 3.0; Fashion-MNIST by "
        "Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf), under the MIT licence. "
        "The stages follow fastai lesson 4 and the PyTorch MNIST tutorials."
    )


ui.navigation(home)
