"""Reading what an AppTest page shows: chart titles and metrics, as a user sees them."""

import json


def chart_titles(at) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def code_shown(at) -> list[str]:
    """The code a reader sees after opening every "The code that runs" box on the page (closed, they send nothing)."""
    for key in [k for k in at.session_state.keys() if str(k).startswith("code_")]:
        at.session_state[key] = True
    at.run()
    return [c.value for c in at.code]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_spec(at, title: str) -> dict | None:
    """The Plotly spec of the chart with this title, or None when the page shows none."""
    for chart, shown in zip(at.get("plotly_chart"), chart_titles(at)):
        if shown == title:
            return json.loads(chart.proto.spec)
    return None


def plot_array(value):
    """A Plotly array from a chart spec as a float32 tensor: a plain list, or a typed array ({dtype, bdata, shape})."""
    import base64

    import numpy as np
    import torch

    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(s) for s in str(value.get("shape", len(flat))).split(",")]
        return torch.tensor(flat.reshape(shape).astype(np.float32))
    return torch.tensor(value, dtype=torch.float32)


def damaged_copy(source_id: str, bad_id: str, weights: bytes | None = None) -> str:
    """A copy of a stored model under ``bad_id`` whose weights file is ``weights`` (default: the real file cut
    to a third), with a record that is fine; the caller deletes it. Pages must say it cannot be used."""
    from digitlab.store import ModelStore

    store = ModelStore()
    record = json.loads((store.root / f"{source_id}.json").read_text())
    record["id"], record["created"] = bad_id, "2000-01-01T00:00:00"
    if weights is None:
        real = (store.root / f"{source_id}.safetensors").read_bytes()
        weights = real[: len(real) // 3]
    (store.root / f"{bad_id}.safetensors").write_bytes(weights)
    (store.root / f"{bad_id}.json").write_text(json.dumps(record))
    return bad_id


def open_page(page: str, **state):
    """Run a page under AppTest with these session_state values set first, as a user's earlier choices."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


# How long a test waits for a run before it gives up: a guard against a hang, never a time limit (on a machine
# shared with other test runs, a small run can take minutes).
WAIT_S = 600


def wait_for_job(at, state_key: str, timeout: float = WAIT_S):
    """The snapshot of the training job a page started under ``state_key``, once it has finished."""
    from digitlab import ui

    return ui.get_queue().wait(at.session_state[state_key], timeout=timeout)


def copy_trained(trained: dict, folder) -> None:
    """The session's trained models (the ``trained`` fixture) copied into ``folder``, a store of a test's own."""
    import shutil
    from pathlib import Path

    from digitlab.store import ModelStore

    Path(folder).mkdir(parents=True, exist_ok=True)
    for info in trained.values():
        for path in ModelStore().root.glob(f"{info.id}.*"):
            shutil.copy2(path, Path(folder) / path.name)
