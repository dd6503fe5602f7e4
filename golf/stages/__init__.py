"""The pipeline's stages, each a plain function of the run state: training (build, train, average), export
(calibrate, quantize, compress, load back) and scoring (the evaluations and the byte account)."""
