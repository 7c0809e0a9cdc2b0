"""The Streamlit layer, the only code that imports streamlit. One job per file:

- resources: what every session shares once per process (data, store listing, queue, loaded models, memory keeper)
- frame: the frame around every page (navigation, page_setup, data banner, sidebar, links)
- code_box: the code a teaching page shows (show_code: the real source, drawn once its box is opened)
- training: the shared training widgets (preset, settings, Train, live panel, one more epoch, runs compared)
- watch: inside the live panel, the model as it learns (first layer, 16 test digits) and Pause / Step one batch
- pickers: choosing a stored model or a test image, and the one table of stored models
- analyses: each stored model's analysis for Evaluate and Features, and its untrained start
- teacher: the teacher's page (key, runs, limits, models, drawings, store health)
- links: a stage's setup kept in the address, restored from a shared link
- lr_finder: the learning-rate finder's section (one sweep per setup, shared by the class)
- finetune: the Our Handwriting page's sections (a model, the class's drawings, fine-tune, before/after)
- sketch: the Sketch Pad's pad key, stroke width and Clear, and its save (true digit, Save, the confirmation)
- cells: the confusion matrix's cell picker (a click on the heatmap; a tap on a table on a touch screen)
- conv: one number of a CNN's feature map worked out (patch x kernel, sum + bias, BatchNorm, ReLU, max-pool)
- notes: what the CNN and Features pages say beside a model's insides (output, units that fire, saliency...)
- run_words: what the training pages say about a run (its label, caption, a verdict, how fit() trains)
- text: a run's numbers in the pages' words (how long, its place in line, why it is refused)
- together: on every page, this browser's pseudonym (from a token in its own storage), following the teacher, the
  teacher's question and its answer box (the class bar)
- class_lead: the Teacher page's class sections: follow me, hold Train, predict-then-see, the class's names (erase)
- fool: the fool-the-model round (Save's hook on the Sketch Pad, the teacher's gallery, the fine-tuning at its end)
- room: which page each browser is on (page_setup notes it), the Teacher page's "The room now"
- take_home: a model as a zip to download (weights, ONNX, train.py, predict.py), on Home, Evaluate, Sketch Pad
- evaluation: what the Evaluate page says and keeps track of (captions, table rows, the confusion cell followed);
  confidence_note for every page that shows a model's "% sure". The Evaluate page reads this module whole (as
  ``words``); its other names are not re-exported

Pages call ``ui.<name>``; every name they use is re-exported here.
"""

from ..lessons import LR_OPTIONS
from ..train import device_label
from .analyses import initial_model, model_analysis, model_embedding, model_robustness
from .cells import confusion_cells
from .class_lead import ask_the_class, lead_the_class, pseudonyms
from .code_box import show_code
from .conv import conv_arithmetic, feature_map_sheets, model_and_image
from .evaluation import confidence_note
from .finetune import before_and_after, class_drawings, fine_tune_section, my_handwriting, ten_digit_model
from .fool import fool_round
from .frame import (
    ROOT,
    STAGES,
    TRAIN_PAGES,
    chart,
    data_banner,
    existing_stages,
    fetch_full_mnist,
    glossary,
    link,
    navigation,
    page_setup,
    presenting,
    px,
    sidebar_status,
    train_links,
)
from .links import LinkedPage, ViewPage, restore_setup, restore_view, share_setup, share_view
from .lr_finder import lr_finder
from .notes import (
    before_after_note,
    firing_note,
    output_note,
    pair_note,
    pair_weights_note,
    saliency_note,
    share_of_start,
)
from .pickers import (
    choose_models,
    class_pair_picker,
    compare_picker,
    dataset_comparison,
    loaded_model,
    mnist_only,
    model_label,
    model_picker,
    models_table,
    models_with_analyses,
    store_problems,
    test_image_picker,
)
from .resources import (
    Throttle,
    _load_data,
    _load_model,
    dataset_in_use,
    dataset_models,
    get_data,
    get_queue,
    get_store,
    load_model,
    memory_keeper,
    owner_id,
    per_model,
    shared,
    shared_figure,
    shared_table,
    stored_models,
)
from .room import room_now
from .run_words import how_fit_trains, trained_caption
from .sketch import drawn, pad_caption, pad_controls, pad_key, save_form, stroke_width, toolbar_room
from .take_home import take_home
from .teacher import (
    teacher_drawings,
    teacher_limits,
    teacher_models,
    teacher_runs,
    teacher_store_health,
    teacher_unlocked,
)
from .text import duration_text
from .training import (
    dataset_prefix,
    estimated_seconds,
    one_more_epoch,
    preset_picker,
    runs_comparison,
    session_runs,
    start_training,
    train_section,
    training_controls,
    training_panel,
)

__all__ = [
    "LR_OPTIONS", "ROOT", "STAGES", "TRAIN_PAGES", "_load_data", "_load_model", "data_banner", "device_label",
    "chart", "dataset_in_use", "dataset_prefix", "estimated_seconds", "dataset_models", "existing_stages", "fetch_full_mnist", "glossary", "presenting", "px", "get_data", "get_queue", "get_store", "link", "load_model",
    "memory_keeper", "class_pair_picker", "choose_models", "compare_picker", "dataset_comparison", "model_label", "model_picker", "models_table", "mnist_only", "navigation", "one_more_epoch", "owner_id", "per_model",
    "page_setup", "preset_picker", "runs_comparison", "session_runs", "shared", "show_code", "sidebar_status",
    "start_training", "store_problems", "stored_models", "test_image_picker", "train_links",
    "train_section", "training_controls", "training_panel", "initial_model", "model_analysis", "model_embedding",
    "model_robustness", "shared_figure", "shared_table", "teacher_drawings", "teacher_limits", "teacher_models", "teacher_runs",
    "teacher_store_health", "teacher_unlocked", "LinkedPage", "restore_setup", "share_setup", "ViewPage",
    "restore_view", "share_view", "loaded_model", "models_with_analyses", "take_home", "room_now",
    "my_handwriting", "ask_the_class", "Throttle", "lead_the_class", "pseudonyms", "fool_round",
    "lr_finder", "conv_arithmetic", "feature_map_sheets", "model_and_image", "confidence_note", "before_after_note", "firing_note", "output_note", "pair_note",
    "pair_weights_note", "saliency_note", "share_of_start", "how_fit_trains", "trained_caption", "duration_text", "ten_digit_model", "class_drawings", "fine_tune_section", "before_and_after",
    "confusion_cells", "toolbar_room", "drawn", "pad_caption", "pad_controls", "pad_key", "save_form", "stroke_width",
]
