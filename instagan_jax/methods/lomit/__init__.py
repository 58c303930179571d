"""LOMIT (Cho et al. 2019): exemplar-guided local translation with learned masks and Highway AdaIN.
Networks (`networks`), losses (`losses`) and the WGAN-GP training step (`step`); docs/LOMIT.md."""

from __future__ import annotations

from instagan_jax.methods import Method
from instagan_jax.methods.lomit import step

METHOD = Method(name="lomit", networks=step.NETWORKS, data="attributes", make_spec=step.Spec.from_config,
                init_state=step.init_state, train_step=step.train_step, summarize=step.summarize,
                modules=step.modules, visual_rows=step.visual_rows)
