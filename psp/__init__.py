"""The fake PSP as a product: a stateful, fault-injecting test PSP that speaks Stripe's wire
format for the subset payengine uses, so the official `stripe` library (and any Stripe client)
works against it. `payengine psp serve` runs it on its own; `payengine serve` and the demo run
it beside the API. It wraps the simulator's FakePsp (simulator/fake_psp.py) and is the only
HTTP code that knows the simulator exists: `web/` is payengine's own API alone.
"""
