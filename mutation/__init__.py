"""`make mutation`: the simulator's mutation score over the engine's money-moving code.

Issue 10 asks whether the oracle sees every bug the tests see. A mutation-testing tool
(cosmic-ray) plants one small change at a time in actors/ and the money-moving parts of
engine/, and the kill check (`mutation.check`) is the simulator alone: a few shipped scenarios,
scaled down, a few seeds, judged by the oracle. A mutant that no scenario notices is either
equivalent (explained in docs/scenarios.md) or a gap the oracle misses.

Layout: `check` (the kill check), `targets` (what is mutated and which mutants are noise),
`session` (cosmic-ray's session on a scratch copy of the tree), `report` (the score).
"""
