package main

// The _id lookup index.
//
// FerretDB v1.24.2 (SQLite backend) pushes a filter {_id: <string or
// ObjectId>} down to SQL as
//
//	SELECT _ferretdb_sjson FROM "<table>" WHERE _ferretdb_sjson->'$._id' = ?
//
// (internal/backends/sqlite/collection.go, metadata.IDColumn), but builds
// its own unique _id_ index on (_ferretdb_sjson->"_id"). SQLite matches an
// index on an expression only when the query spells the expression the same
// way, so that index is never used and every _id lookup scans the table.
//
// devdb therefore adds, to every collection table of every database in its
// data directory, an index on exactly the query's expression:
//
//	CREATE INDEX IF NOT EXISTS "devdb_id$<table>" ON "<table>" (_ferretdb_sjson->'$._id')
//
// once at start (before the server is ready) and then for collections
// created while it runs, by looking at each database's _ferretdb_collections
// table whenever its files change (checked every idIndexInterval).
//
// FerretDB neither knows nor minds such an index: its own indexes are
// listed in _ferretdb_collections.settings, and listIndexes, dropIndexes and
// the index sizes of dbStats/collStats read only those. The index goes with
// the table when the collection is dropped, and stays in the file across
// restarts.
//
// The name cannot collide with one of FerretDB's: its table names are
// lower(collection) + "_" + 8 hex digits (at least 10 characters, never a
// "$", since collection names cannot contain one), and its index names are
// such a table name + "_" + the MongoDB index name; "devdb_id$" has its "$"
// in 9th place.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the pure-Go driver FerretDB links already
)

const (
	// idExpr must be, character for character, the expression of
	// FerretDB's pushed-down _id filter (metadata.IDColumn in v1.24.2).
	idExpr = `_ferretdb_sjson->'$._id'`

	idIndexPrefix = "devdb_id$"

	// idIndexInterval: how often the files' sizes and times are checked.
	idIndexInterval = 250 * time.Millisecond

	// idIndexRecheck: a file is read again after this long even if its
	// size and times look unchanged (file times have the kernel's coarse
	// clock, a few ms, and a reused WAL keeps its size).
	idIndexRecheck = 5 * time.Second

	// sqliteBusyMs: how long a statement waits for FerretDB's write lock;
	// the same busy timeout FerretDB sets on its own connections.
	sqliteBusyMs = 10000

	dbFileExt = ".sqlite"
)

// idIndexer adds the _id index to the collections of the *.sqlite files
// in dir.
type idIndexer struct {
	dir string
	out io.Writer // the launcher's log (stderr)

	mu     sync.Mutex
	seen   map[string]seenFile // file => when it was last looked at
	failed map[string]string   // file + "\x00" + table => last error logged
}

func newIDIndexer(dir string, out io.Writer) *idIndexer {
	return &idIndexer{
		dir:    dir,
		out:    out,
		seen:   map[string]seenFile{},
		failed: map[string]string{},
	}
}

type seenFile struct {
	sig fileSig
	at  time.Time
}

// fileSig identifies the state of a database's files: any committed
// change (a new collection included) changes the WAL file or, after a
// checkpoint, the main file.
type fileSig struct {
	ino, size, mtime          int64
	walIno, walSize, walMtime int64
}

func statSig(path string) (fileSig, error) {
	var s fileSig

	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return s, err
	}
	s.ino, s.size, s.mtime = int64(st.Ino), st.Size, st.Mtim.Nano()

	if err := syscall.Stat(path+"-wal", &st); err == nil {
		s.walIno, s.walSize, s.walMtime = int64(st.Ino), st.Size,
			st.Mtim.Nano()
	}

	return s, nil
}

// run checks the files every interval until ctx ends.
func (x *idIndexer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			x.sweep(ctx)
		}
	}
}

// sweep indexes what is missing in every database file that changed
// since it was last looked at (or longer ago than idIndexRecheck).
func (x *idIndexer) sweep(ctx context.Context) {
	x.mu.Lock()
	defer x.mu.Unlock()

	files, err := filepath.Glob(filepath.Join(x.dir, "*"+dbFileExt))
	if err != nil {
		return // only for a malformed pattern
	}

	present := make(map[string]bool, len(files))

	for _, f := range files {
		present[f] = true

		sig, err := statSig(f)
		if err != nil {
			continue // dropped meanwhile
		}
		if old, ok := x.seen[f]; ok && old.sig == sig &&
			time.Since(old.at) < idIndexRecheck {
			continue
		}

		if ctx.Err() != nil {
			return
		}

		// sig was taken before the file is read: a change after it
		// makes the next sweep look again.
		if x.indexFile(ctx, f) {
			x.seen[f] = seenFile{sig: sig, at: time.Now()}
		} else {
			delete(x.seen, f)
		}
	}

	for f := range x.seen {
		if !present[f] {
			delete(x.seen, f)
		}
	}
}

type collTable struct{ name, table string }

// indexFile creates the missing indexes in one database file. It returns
// false if it should be looked at again at the next sweep, true if only
// after it changed (or idIndexRecheck): when everything is indexed, and
// also after a failure, which is retried when the database changes rather
// than every interval.
func (x *idIndexer) indexFile(ctx context.Context, path string) bool {
	dbName := strings.TrimSuffix(filepath.Base(path), dbFileExt)

	// mode=rw: never create a file (FerretDB may have just dropped it).
	// The file is in WAL mode already (FerretDB sets it on every
	// connection); only the busy timeout is ours to set.
	db, err := sql.Open("sqlite", fmt.Sprintf(
		"file:%s?mode=rw&_pragma=busy_timeout(%d)", path, sqliteBusyMs))
	if err != nil {
		x.logf("cannot open %s to index _id: %v", path, err)
		return false
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	missing, err := missingIDIndexes(ctx, db)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false
	case isCantOpen(err):
		// dropped meanwhile
		return false
	case isNoSuchTable(err):
		// A database being created has no _ferretdb_collections yet
		// (or the file is not FerretDB's): look again when it changes.
		return true
	default:
		x.logOnce(path, "", "devdb: cannot read the collections of "+
			"database %s (%s): %v; will retry when it changes", dbName,
			path, err)
		return true
	}

	for _, c := range missing {
		if ctx.Err() != nil {
			return false
		}

		start := time.Now()
		err := createIDIndex(ctx, db, c.table)
		took := time.Since(start)

		if err == nil {
			delete(x.failed, path+"\x00"+c.table)
			x.logf("devdb: indexed _id of %s.%s for lookups (index %q on "+
				"table %q, %s)", dbName, c.name, idIndexPrefix+c.table,
				c.table, took.Round(time.Millisecond))
			continue
		}

		if ctx.Err() != nil {
			return false
		}

		// Dropped between the listing and now: nothing to index.
		if ok, e := tableExists(ctx, db, c.table); e == nil && !ok {
			continue
		}

		x.logOnce(path, c.table, "devdb: could not index _id of %s.%s "+
			"(table %q): %v; the collection works without it, but a "+
			"lookup by _id scans all its documents; will retry when the "+
			"database changes", dbName, c.name, c.table, err)
	}

	return true
}

// missingIDIndexes lists the collections whose table exists and has no
// devdb _id index yet.
func missingIDIndexes(ctx context.Context, db *sql.DB) ([]collTable, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT c.name, c.table_name
		FROM _ferretdb_collections AS c
		WHERE EXISTS (SELECT 1 FROM sqlite_master
		              WHERE type = 'table' AND name = c.table_name)
		  AND NOT EXISTS (SELECT 1 FROM sqlite_master
		                  WHERE type = 'index' AND name = ? || c.table_name)
		ORDER BY c.table_name`, idIndexPrefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	var list []collTable
	for rows.Next() {
		var c collTable
		if err := rows.Scan(&c.name, &c.table); err != nil {
			return nil, err
		}
		list = append(list, c)
	}

	return list, rows.Err()
}

func createIDIndex(ctx context.Context, db *sql.DB, table string) error {
	_, err := db.ExecContext(ctx, idIndexSQL(table))
	return err
}

// idIndexSQL is the statement that indexes table's _id lookups.
func idIndexSQL(table string) string {
	return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
		quoteIdent(idIndexPrefix+table), quoteIdent(table), idExpr)
}

func tableExists(ctx context.Context, db *sql.DB, table string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
		WHERE type = 'table' AND name = ?`, table).Scan(&n)
	return n > 0, err
}

// quoteIdent quotes an SQLite identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func isNoSuchTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}

func isCantOpen(err error) bool {
	return err != nil && (errors.Is(err, os.ErrNotExist) ||
		strings.Contains(err.Error(), "unable to open"))
}

func (x *idIndexer) logf(format string, args ...any) {
	fmt.Fprintf(x.out, format+"\n", args...)
}

// logOnce logs a failure unless the same one was just logged for the same
// file and table, so that a lasting problem is one line, not one a tick.
func (x *idIndexer) logOnce(path, table, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := path + "\x00" + table
	if x.failed[key] == msg {
		return
	}
	x.failed[key] = msg
	x.logf("%s", msg)
}
