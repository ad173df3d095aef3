"""The analyze stage: the emission order the model learned (ordering), where it fails
(error_analysis), encoder activations (activations), every figure (figures), and the stage's
driver (run)."""
