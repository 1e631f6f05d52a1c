#!/usr/bin/python3
# rotate-llama2c.py — an experiment for issue 6 (docs/pareto-stories260K.md):
# a residual-stream rotation of a llama2.c legacy fp32 checkpoint, the
# same function in another basis. The RMSNorm weights are folded into the
# matrices that read the norms (norms become 1), then with Q orthogonal
# (dim x dim): embedding E' = E Q, matrices reading the residual W' = W Q,
# matrices writing it W' = Q^T W, and the classifier, untied,
# E diag(g_final) Q. Greedy text is unchanged (checked with q35 run).
#   /usr/bin/python3 scripts/rotate-llama2c.py IN.bin OUT.bin hadamard|orth|none SEED
# hadamard: H diag(+-1) / sqrt(dim) (dim a power of 2); orth: QR of a
# Gaussian matrix; none: Q = I (folding and untying only). Needs numpy
# (Debian: python3-numpy).
import sys, struct, numpy as np
src, dst, kind, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b = open(src, 'rb').read()
dim, hidden, L, nh, nkv, vocab, seq = struct.unpack('7i', b[:28])
shared = vocab > 0; V = abs(vocab); hd = dim // nh; kvd = nkv * hd
f = np.frombuffer(b[28:], dtype=np.float32).copy()
off = 0
def take(*shape):
    global off
    n = int(np.prod(shape)); a = f[off:off+n].reshape(shape); off += n; return a
E = take(V, dim); ra = take(L, dim); wq = take(L, dim, dim); wk = take(L, kvd, dim); wv = take(L, kvd, dim)
wo = take(L, dim, dim); rf = take(L, dim); w1 = take(L, hidden, dim); w2 = take(L, dim, hidden); w3 = take(L, hidden, dim)
rfin = take(dim); fr = take(seq, hd // 2); fi = take(seq, hd // 2)
wcls = E if shared else take(V, dim)
rng = np.random.default_rng(seed)
if kind == 'hadamard':
    H = np.array([[1.0]])
    while H.shape[0] < dim: H = np.block([[H, H], [H, -H]])
    assert H.shape[0] == dim, 'dim not a power of 2'
    Q = (np.diag(rng.choice([-1.0, 1.0], dim)) @ H) / np.sqrt(dim)
elif kind == 'none':
    Q = np.eye(dim)
else:
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
Q = Q.astype(np.float64)
d = lambda a: a.astype(np.float64)
out = []
E2 = d(E) @ Q
cls2 = (d(wcls) * d(rfin)[None, :]) @ Q
layers = []
for l in range(L):
    g = d(ra[l]); gf = d(rf[l])
    layers.append(dict(wq=(d(wq[l]) * g) @ Q, wk=(d(wk[l]) * g) @ Q, wv=(d(wv[l]) * g) @ Q, wo=Q.T @ d(wo[l]),
                       w1=(d(w1[l]) * gf) @ Q, w2=Q.T @ d(w2[l]), w3=(d(w3[l]) * gf) @ Q))
hdr = struct.pack('7i', dim, hidden, L, nh, nkv, -V, seq)
parts = [E2, np.ones((L, dim))] + [np.stack([x['wq'] for x in layers]), np.stack([x['wk'] for x in layers]),
         np.stack([x['wv'] for x in layers]), np.stack([x['wo'] for x in layers]), np.ones((L, dim)),
         np.stack([x['w1'] for x in layers]), np.stack([x['w2'] for x in layers]), np.stack([x['w3'] for x in layers]),
         np.ones(dim), fr, fi, cls2]
with open(dst, 'wb') as o:
    o.write(hdr)
    for p in parts: o.write(np.asarray(p, dtype=np.float32).tobytes())
print(dst, 'dim', dim, 'hidden', hidden, 'layers', L, 'shared', shared)
