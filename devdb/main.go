// Command devdb runs an embedded FerretDB (MongoDB wire protocol, SQLite
// storage) for `make run` and the tests.
//
// It only ever listens on a loopback address: FerretDB here runs without
// authentication, so it must not be reachable from other machines.
//
// Exit status: 0 after a clean shutdown on SIGTERM/SIGINT, 2 for bad flags,
// 1 for any other failure (port in use, data directory locked, not ready
// in time).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const (
	// readyTimeout bounds the self-check ping after the port is bound.
	readyTimeout = 30 * time.Second

	// stopTimeout bounds a clean shutdown; FerretDB gives connected
	// clients about 3 s to go away, so this is generous.
	stopTimeout = 15 * time.Second

	lockName = "devdb.lock"
)

type options struct {
	listen    string
	dataDir   string
	logLevel  string
	readyFile string
	idIndex   bool
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options

	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:27017",
		"loopback `host:port` to listen on (port 0 picks a free port; "+
			"see -ready-file)")
	fs.StringVar(&o.dataDir, "data", "",
		"data `directory` for the SQLite files (created if missing; required)")
	fs.StringVar(&o.logLevel, "log-level", "warn",
		"log `level`: debug, info, warn or error")
	fs.StringVar(&o.readyFile, "ready-file", "",
		"once the server answers a MongoDB ping, write its host:port "+
			"to this `file` (removed again on shutdown)")
	fs.BoolVar(&o.idIndex, "id-index", true,
		"index every collection's _id the way FerretDB's lookups query it "+
			"(see README.md); -id-index=false leaves the files as FerretDB "+
			"makes them")
	version := fs.Bool("version", false, "print the FerretDB version and exit")

	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}

	if *version {
		fmt.Println("devdb: embedded FerretDB", ferretdbVersion())
		return 0
	}

	if fs.NArg() != 0 {
		return usageError("unexpected arguments: %q", fs.Args())
	}

	level, err := parseLevel(o.logLevel)
	if err != nil {
		return usageError("-log-level: %v", err)
	}

	addr, err := loopbackAddr(o.listen)
	if err != nil {
		return usageError("-listen: %v", err)
	}

	if o.dataDir == "" {
		return usageError("-data DIR is required")
	}

	if err := probePort(addr); err != nil {
		return fail("%v", err)
	}

	dir, err := prepareDataDir(o.dataDir)
	if err != nil {
		return fail("%v", err)
	}

	unlock, err := lockDataDir(dir)
	if err != nil {
		return fail("%v", err)
	}
	defer unlock()

	// A ready file left by an earlier run must not let a waiting script
	// go on before this one is up.
	if o.readyFile != "" {
		if err := os.Remove(o.readyFile); err != nil && !os.IsNotExist(err) {
			return fail("-ready-file: %v", err)
		}
	}

	// Collections written by an earlier run get their _id index before
	// the server takes connections; later ones from the watcher below.
	var ix *idIndexer
	if o.idIndex {
		ix = newIDIndexer(dir, os.Stderr)
		ix.sweep(context.Background())
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr,
		&slog.HandlerOptions{Level: level}))

	fdb, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		// probePort can lose a race with another process.
		if strings.Contains(err.Error(), "address already in use") {
			return fail("%s is already in use; stop whatever listens "+
				"there or pass another -listen port", addr)
		}
		return fail("starting FerretDB: %v", err)
	}

	// The listener is bound by now, so this is the real address even
	// for port 0.
	uri := fdb.MongoDBURI()
	bound := strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")

	ctx, stop := signal.NotifyContext(context.Background(),
		syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- fdb.Run(ctx) }()

	if ix != nil {
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			ix.run(ctx, idIndexInterval)
		}()
		// on every return below ctx is cancelled first (stop() or the
		// deferred one), so this does not wait for long
		defer func() { stop(); <-watched }()
	}

	readyCtx, cancelReady := context.WithTimeout(ctx, readyTimeout)
	err = waitReady(readyCtx, bound)
	cancelReady()

	switch {
	case ctx.Err() != nil:
		// Signalled while starting: fall through to the clean stop.
	case err != nil:
		fmt.Fprintf(os.Stderr, "devdb: %s did not answer a ping within %s: "+
			"%v\n", bound, readyTimeout, err)
		stop()
		waitStopped(done)
		return 1
	default:
		if o.readyFile != "" {
			if err := writeFileAtomic(o.readyFile, bound+"\n"); err != nil {
				fmt.Fprintf(os.Stderr, "devdb: -ready-file: %v\n", err)
				stop()
				waitStopped(done)
				return 1
			}
			defer os.Remove(o.readyFile)
		}
		fmt.Fprintf(os.Stderr, "devdb: FerretDB %s ready at %s (data %s, "+
			"pid %d)\n", ferretdbVersion(), uri, dir, os.Getpid())
	}

	select {
	case <-ctx.Done():
	case err := <-done:
		// Run only returns early if the listener died under us.
		return fail("FerretDB stopped unexpectedly: %v", err)
	}

	// Back to the default handlers: a second SIGTERM/SIGINT kills at once.
	stop()

	if !waitStopped(done) {
		return fail("FerretDB did not stop within %s", stopTimeout)
	}
	return 0
}

func waitStopped(done <-chan error) bool {
	select {
	case <-done:
		return true
	case <-time.After(stopTimeout):
		return false
	}
}

func usageError(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "devdb: "+format+"\n", args...)
	fmt.Fprintln(os.Stderr, "usage: devdb -data DIR [-listen 127.0.0.1:27017] "+
		"[-log-level warn] [-ready-file PATH] [-id-index=false]")
	return 2
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "devdb: "+format+"\n", args...)
	return 1
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
}

// loopbackAddr accepts only a literal loopback IP (or "localhost", taken
// as 127.0.0.1) and a numeric port, so the server is never exposed.
func loopbackAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %v", s, err)
	}

	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535",
			s, port)
	}

	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}

	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q: refusing to listen on non-loopback "+
			"address %q; devdb has no authentication, use 127.0.0.1 or [::1]",
			s, host)
	}

	return net.JoinHostPort(ip.String(), strconv.Itoa(p)), nil
}

// prepareDataDir creates the directory and returns its absolute path.
// FerretDB takes it as a "file:" URI, so URI syntax is kept out of it.
func prepareDataDir(d string) (string, error) {
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("-data %q: %v", d, err)
	}

	if strings.ContainsAny(abs, "?#%") {
		return "", fmt.Errorf("-data %q: the path must not contain ?, # or %%",
			d)
	}

	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("-data: %v", err)
	}

	return abs, nil
}

// lockDataDir keeps two servers off the same SQLite files: FerretDB caches
// their metadata in memory and would not see the other's changes.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockName)

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("-data: %v", err)
	}

	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another devdb "+
			"(pid %s)", dir, strings.TrimSpace(string(b)))
	}

	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)

	return func() { f.Close() }, nil
}

// probePort gives a plain error for a taken port before FerretDB opens the
// database; FerretDB's own error for it is wrapped in internal detail.
func probePort(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is already in use; stop whatever listens "+
				"there or pass another -listen port", addr)
		}
		return fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	return l.Close()
}

func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())

	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}

	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}

	return nil
}

func ferretdbVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/FerretDB/FerretDB" {
				return m.Version
			}
		}
	}
	return "(unknown version)"
}
