/* calibrate.h — quantizing with GPTQ calibrated on text, sequentially: the
 * stages of q35_quant_stage_of (q35.h) each calibrate on a file whose
 * earlier stages are quantized and the rest is not, paired with the
 * unquantized model (asymmetric calibration, gptq.h); then the block
 * scales and norm weights are tuned end to end (tune.h). */
#ifndef Q35_QUANT_CALIBRATE_H
#define Q35_QUANT_CALIBRATE_H

#include "q35.h"

/* What the stages of one quantization add up to. */
typedef struct q35_quant_totals {
    double err2, ref2;  /* squared weight errors and squared weights, quantized matrices */
    double bpw;         /* bits per weight of the 2-D tensors of the file last written */
    int done;           /* tensors reported to the progress callback */
} q35_quant_totals;

/* Writes m quantized as o says to out_path. stage 0: every tensor, as one
 * step. stage > 0: the matrices of that stage are quantized (with o->calib),
 * those of earlier stages copied from prev (the previous stage's file) and
 * the later ones written F32. Adds to tot. */
int q35_quantize_stage(const q35_model *m, const char *out_path, const q35_quant_options *o, int stage,
                       const q35_model *prev, q35_quant_totals *tot, q35_error *err);

/* The whole quantization with o->calib_docs: every stage in turn (or, with
 * o->calib_fast, one calibration run through m), then, unless
 * o->tune_epochs says none, end-to-end tuning of the result (tune.h) on the
 * same documents. Stage files and the untuned file are written beside
 * out_path's file ("FILE.stage-XXXXXX", "FILE.untuned-XXXXXX"; in
 * o->scratch_dir when out_path is a device, FIFO or socket) and removed. */
int q35_quantize_calibrated(const q35_model *m, const char *out_path, const q35_quant_options *o,
                            q35_quant_totals *tot, q35_error *err);

#endif
