"""Take a model home: one of the page's models as a zip (weights, ONNX, train.py, predict.py, README), made on
request in a process of its own (``export.zip_bytes``) and then offered as a download."""

from __future__ import annotations

import streamlit as st

from .. import export
from ..models import ModelInfo
from ..store import StoreError
from .resources import get_store


@st.fragment
def take_home(infos: list[ModelInfo], key: str) -> None:
    """Pick one of ``infos`` (the page's models, the first by default), prepare its zip, download it. A fragment:
    preparing reruns this box only."""
    if not infos:
        return
    with st.expander("📦 Take a model home: its weights, ONNX, and a train.py to run yourself"):
        by_id = {i.id: i for i in infos}
        chosen = st.selectbox("Model", list(by_id), key=f"{key}_export_model", format_func=lambda i: by_id[i].title)
        ready = st.session_state.get(f"{key}_export_zip")
        if ready is None or ready[0] != chosen:
            offer = st.empty()  # the caption and the button, replaced by the download once the zip is ready
            with offer.container():
                st.caption("One zip: model.safetensors and model.json (the weights and the record), model.onnx (opens "
                           "in Netron, runs in ONNX Runtime), train.py (this recipe in plain PyTorch), predict.py, "
                           "notebook.ipynb, README.md.")
                asked = st.button("Prepare the zip", key=f"{key}_export_go")
            if asked:
                try:
                    with st.spinner("Writing the ONNX file and the scripts (a few seconds)..."):
                        st.session_state[f"{key}_export_zip"] = ready = (chosen, export.zip_bytes(get_store(), chosen))
                except (export.ExportError, StoreError, OSError) as e:
                    st.error(f"That model could not be exported: {e}")
                    return
                offer.empty()
        if ready is not None and ready[0] == chosen:
            size = len(ready[1])
            said = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"
            st.download_button(f"Download {export.zip_name(chosen)} ({said})", ready[1],
                               file_name=export.zip_name(chosen), mime="application/zip", key=f"{key}_export_file",
                               on_click="ignore", type="primary")
