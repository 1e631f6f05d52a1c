# `make pareto [MODEL=FILE]`: quality per bit. Quantizes MODEL (default
# stories3M) to every Q3_5-family type, scores each and llama.cpp's
# Q8_0/Q4_0 files of the same model on the dev text (perplexity and KL
# divergence from the fp32 model), writes docs/pareto-NAME.md and draws
# docs/pareto-NAME.png (scripts/pareto.sh). Needs gnuplot:
# apt-get install -y gnuplot-nox
.PHONY: pareto
pareto: $(BUILD)/q35
	@Q35=$(BUILD)/q35 OUT=$(BUILD)/pareto bash scripts/pareto.sh $(MODEL)
