"""Reading what an AppTest page shows: chart titles and metrics, as a user sees them."""

import json


def chart_titles(at) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_spec(at, title: str) -> dict | None:
    """The Plotly spec of the chart with this title, or None when the page shows none."""
    for chart, shown in zip(at.get("plotly_chart"), chart_titles(at)):
        if shown == title:
            return json.loads(chart.proto.spec)
    return None
