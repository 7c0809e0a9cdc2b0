"""For the teacher: the room now (who is on which stage), leading the class (follow me, hold Train, a question
before a run, a fool-the-model round), the class's runs, the limit on one student's run, the stored models, the
class's drawings and names.
Nothing here works without the teacher key the server was started with (DIGITLAB_TEACHER_KEY)."""

from digitlab import ui

ui.page_setup("Teacher", "🎓", "Manage the class's runs, models and drawings. Students cannot: this page needs "
              "the teacher key.")
if ui.teacher_unlocked():
    ui.room_now([title for _, title, _, _ in ui.STAGES])
    ui.lead_the_class()
    ui.ask_the_class()
    ui.fool_round()
    ui.teacher_runs()
    ui.teacher_limits()
    ui.teacher_models()
    ui.teacher_drawings()
    ui.pseudonyms()
    ui.teacher_store_health()
