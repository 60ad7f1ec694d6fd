"""Paper experiments: the numbers the paper reports (``paper``) and gathering finished runs beside them
(``collect``). The recipes themselves are Hydra configs (``conf/experiment/``) and commands (``experiments/``)."""
