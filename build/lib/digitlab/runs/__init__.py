"""A training run's one road: its description (spec), the class's queue (queue: books and rules; estimate: what a
run should cost), how a run is steered (steering), the run itself (execute), and the runners that carry it out
(runners/: a local training process, a Ray cluster, or in this very process). See ARCHITECTURE.md, "One road"."""
