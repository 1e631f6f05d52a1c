#!/usr/bin/env python3
"""speed2_table.py — bench/speed2_table.sh's log as issue 19's markdown tables.

    bench/speed2_table.py LOG

One table per section: tokens/s (mean ± sd) per engine and type, and the
roofline fractions of the tg columns. q35's fractions are `q35 bench
--roofline`'s own (its bandwidth measured around each tg test); llama.cpp's
are its bytes read per token times tokens/s over the highest bandwidth q35
measured in the same section, the bytes being every tensor but token_embd
(from llama-quantize's log) plus, at depth, the f16 KV cache (depth + 16
positions, as the tg test's middle)."""
import re
import sys

MIB = 1048576.0
# bytes read per generated token besides the KV cache: every tensor but token_embd
LLAMA_BYTES = {
    ("tinyllama-1.1b", "Q4_0"): 555.25 * MIB, ("tinyllama-1.1b", "Q4_K"): 555.25 * MIB,
    ("tinyllama-1.1b", "Q3_K_S"): 424.2 * MIB,
    ("llama2-7b", "Q4_0"): 3545.3 * MIB, ("llama2-7b", "Q4_K"): 3545.3 * MIB,
    ("llama2-7b", "Q3_K_S"): 2708.5 * MIB,
}
KV_PER_POS = {"tinyllama-1.1b": 22 * 2 * 256 * 2, "llama2-7b": 32 * 2 * 4096 * 2}  # f16 K and V


def llama_type(model):
    if "Q4_0" in model:
        return "Q4_0"
    if "Q4_K" in model:
        return "Q4_K"
    if "Q3_K" in model:
        return "Q3_K_S"
    return model


def main(path):
    sections, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("## "):
            cur = {"name": line[3:], "rows": {}, "bw": {}, "scaling": [], "tests": []}
            sections.append(cur)
            continue
        if cur is None:
            continue
        if line.startswith("cpu_scaling"):
            cur["scaling"].append(line)
            continue
        m = re.match(r"read bandwidth .*?: (.*)$", line)
        if m:
            for t, lo, hi in re.findall(r"(\d+) threads? ([\d.]+)-([\d.]+) GB/s", m.group(1)):
                cur["bw"][int(t)] = max(cur["bw"].get(int(t), 0.0), float(hi))
            continue
        if not line.startswith("| ") or "---" in line or "| model" in line:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 9 and cells[5].startswith("CPU ("):  # q35 bench
            engine, typ, threads, test, ts = "q35", cells[1], int(cells[6]), cells[7], cells[8]
            frac = cells[10] if len(cells) > 10 else None
        elif len(cells) >= 7:  # llama-bench
            engine, typ, threads, test, ts = "llama.cpp", llama_type(cells[0]), int(cells[4]), cells[5], cells[6]
            frac = None
        else:
            continue
        test = test.split(" @ ")[0]
        key = (engine, typ)
        cur["rows"].setdefault(key, {})[(test, threads)] = (ts, frac)
        if (test, threads) not in cur["tests"]:
            cur["tests"].append((test, threads))

    for sec in sections:
        shape = "llama2-7b" if "7b" in sec["name"] else "tinyllama-1.1b"
        dm = re.search(r"depth (\d+)", sec["name"])
        depth = int(dm.group(1)) if dm else 0
        tests = sorted(sec["tests"], key=lambda x: (x[1], x[0].startswith("tg"), int(re.sub(r"\D", "", x[0]))))
        tg = sorted({t for t in sec["tests"] if t[0].startswith("tg")}, key=lambda x: x[1])
        print(f"## {sec['name']}\n")
        for s in sec["scaling"]:
            print(f"{s}  ")
        bw = ", ".join(f"{t} thread{'s' if t > 1 else ''} {b:.1f} GB/s" for t, b in sorted(sec["bw"].items()))
        print(f"bandwidth (q35 bench, the highest of its measurements around its tg tests): {bw}\n")
        head = ["engine, type"] + [f"{t} t{n}" for t, n in tests] + [f"{t} t{n} / bw" for t, n in tg]
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        for (engine, typ), vals in sec["rows"].items():
            cells = [f"{engine} {typ}"] + [vals.get(k, ("-", None))[0] for k in tests]
            for k in tg:
                v = vals.get(k)
                if not v:
                    cells.append("-")
                elif engine == "q35":
                    cells.append(v[1] or "-")
                else:
                    mean = float(v[0].split()[0])
                    b = sec["bw"].get(k[1])
                    per_tok = LLAMA_BYTES.get((shape, typ), 0) + KV_PER_POS[shape] * (depth + 16 if depth else 0)
                    cells.append(f"{100 * per_tok * mean / (b * 1e9):.0f}%" if b else "-")
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: speed2_table.py LOG")
    main(sys.argv[1])
