# mk/bench.mk - benchmarks (bench/, results in bench/RESULTS.md)
#
#   make bench                  every case (~20 min), writes bench/RESULTS.md
#   make bench BENCH=fanout     one case (or several: BENCH="scrape chatapi")
#   make bench QUICK=1          a ~4-5 minute smoke run into bench/out/quick/
#                               (its own report there; not the reported numbers)
#   make bench-soak             the 10-minute soak of target 7
#
# Cases: overhead cardinality exactness scrape chatapi fanout memory dbstats cluster
# (make bench BENCH=dbstats: the dashboard's database figures, before/after).
# Loopback only; every process started is stopped by pid.

.PHONY: bench bench-soak

bench: all devdb
	@QUICK=$(QUICK) bench/run.sh $(BENCH)

bench-soak: all devdb
	@QUICK=$(QUICK) bench/run.sh soak
