"""Pre- and post-processing around a served model: what a request goes through before and
after inference when users send images or text and want labels back (images.py, text.py,
labels.py), on the client or on the server."""


def pipeline_label(pipeline) -> str | None:
    """A stored spec's `pipeline` in a few characters, e.g. "pre=client,post=server"; None
    without pre- or post-processing."""
    if not pipeline:
        return None
    sides = {step: pipeline.get(f"{step}process", "none") for step in ("pre", "post")}
    if set(sides.values()) == {"none"}:
        return None
    return ",".join(f"{step}={side}" for step, side in sides.items() if side != "none")
