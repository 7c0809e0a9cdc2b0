"""Teach it our handwriting (Teachable Machine): fine-tune a stored model on the class collection, before and after."""

from digitlab import ui


def main() -> None:
    data = ui.page_setup(
        "Our Handwriting",
        "✍️",
        "A model trained on MNIST has seen 60,000 digits written by American students and clerks, not ours. Teach "
        "it our hand: fine-tune a copy on the class's own drawings (saved on the Sketch Pad), then check it on "
        "drawings it never saw, and on MNIST, to see both what it gained and what it forgot.",
    )
    info = ui.ten_digit_model()
    drawings = ui.class_drawings()
    ui.fine_tune_section(info, drawings, data)
    ui.before_and_after()
    ui.my_handwriting(info)


main()
