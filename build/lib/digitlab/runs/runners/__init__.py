"""The runners: process (a local training process, the default), ray_task (a Ray cluster), inline (this process)."""
