"""Small helpers for the tasks: config resolvers, W&B credentials, run bookkeeping."""
