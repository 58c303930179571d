"""What `instagan eval` computes, shared by every method: metrics (`metrics`), held-out splits (`splits`),
the evaluation of translators on data (`translation`) and the printed table (`tables`). Nothing here
names a method: a method's `evaluate` calls these with its own translator (`methods.base.Translator`)."""
