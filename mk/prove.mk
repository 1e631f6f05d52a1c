# `make prove`: the Frama-C WP proofs (docs/PROOFS.md, proofs/prove.sh).
# Needs: apt-get install -y frama-c-base why3 z3 cvc4
.PHONY: prove
prove:
	@sh proofs/prove.sh
