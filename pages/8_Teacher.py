"""For the teacher: the room now (who is on which stage), the class's runs, the limit on one student's run, the stored models and the class's drawings.
Nothing here works without the teacher key the server was started with (DIGITLAB_TEACHER_KEY)."""

from digitlab import ui

ui.page_setup("Teacher", "🎓", "Manage the class's runs, models and drawings. Students cannot: this page needs "
              "the teacher key.")
if ui.teacher_unlocked():
    ui.room_now([title for _, title, _, _ in ui.STAGES])
    ui.teacher_runs()
    ui.teacher_limits()
    ui.teacher_models()
    ui.teacher_drawings()
    ui.teacher_store_health()
