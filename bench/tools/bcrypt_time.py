#!/usr/bin/env python3
"""bcrypt_time.py HTPASSWD PASSWORD - milliseconds of one crypt(3) check of
the file's first hash (what nginx's auth_basic does per request), median of
20; prints the number."""
import ctypes, ctypes.util, statistics, sys, time
lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
lib.crypt.restype = ctypes.c_char_p
h = open(sys.argv[1]).read().split(":", 1)[1].strip().encode()
ts = []
for _ in range(20):
    t = time.perf_counter()
    ok = lib.crypt(sys.argv[2].encode(), h) == h
    ts.append((time.perf_counter() - t) * 1000)
assert ok, "password does not match"
print("%.3f" % statistics.median(ts))
