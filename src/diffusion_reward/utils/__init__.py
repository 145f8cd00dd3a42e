"""Small shared helpers: atomic checkpoints, seeding, metric writers, devices, video files."""
