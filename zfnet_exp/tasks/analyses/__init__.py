"""One module per offline analysis: ``run(ctx: AnalysisContext) -> dict`` (see ``tasks.analyze``)."""
