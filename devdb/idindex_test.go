package main

// Tests of the _id lookup index against the real devdb binary: collections
// are created through the MongoDB wire protocol (the Go driver), the
// SQLite files are then read directly, and FerretDB's own `explain` shows
// the plan of the query it really runs.
//
//	DEVDB_BIN=../build/devdb go test -run TestIDIndex -v .
//
// Without DEVDB_BIN the test builds the binary from this directory first.

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	mopts "go.mongodb.org/mongo-driver/mongo/options"
)

// devdbBin returns the binary under test.
func devdbBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("DEVDB_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "devdb")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"),
		"build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	dir     string
	logPath string
	exited  chan struct{}
}

// startDevdb runs bin on a free port over dir and waits for its ready file.
func startDevdb(t *testing.T, bin, dir string, args ...string) *server {
	t.Helper()
	ready := filepath.Join(filepath.Dir(dir), "ready")
	logPath := filepath.Join(filepath.Dir(dir), "devdb.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND,
		0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0",
		"-data", dir, "-ready-file", ready, "-log-level", "error"},
		args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, dir: dir, logPath: logPath,
		exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)

	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && len(b) > 0 {
			s.addr = strings.TrimSpace(string(b))
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("devdb exited at start; log:\n%s", s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("devdb not ready in 30 s; log:\n%s", s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *server) client(t *testing.T) *mongo.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, mopts.Client().
		ApplyURI("mongodb://"+s.addr+"/").
		SetServerSelectionTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// openFile opens a database file read-only, as a second reader next to
// the running server (WAL mode allows it).
func openFile(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tableOf returns the SQLite table of a collection.
func tableOf(t *testing.T, db *sql.DB, coll string) string {
	t.Helper()
	var table string
	err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections
		WHERE name = ?`, coll).Scan(&table)
	if err != nil {
		t.Fatalf("collection %q in _ferretdb_collections: %v", coll, err)
	}
	return table
}

// indexSQL returns the CREATE INDEX statement of devdb's index on table,
// or "" if there is none.
func indexSQL(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	var s sql.NullString
	err := db.QueryRow(`SELECT sql FROM sqlite_master
		WHERE type = 'index' AND tbl_name = ? AND name = ?`,
		table, idIndexPrefix+table).Scan(&s)
	if err == sql.ErrNoRows {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.String
}

// waitIndex waits until table has devdb's index; returns how long it took.
func waitIndex(t *testing.T, db *sql.DB, table string, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for indexSQL(t, db, table) == "" {
		if time.Since(start) > max {
			t.Fatalf("no index %q on table %q after %s", idIndexPrefix+table,
				table, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// sqlitePlan is SQLite's plan for the statement FerretDB v1.24.2 runs for
// find({_id: X}) (internal/backends/sqlite/collection.go, Query).
func sqlitePlan(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT  _ferretdb_sjson FROM `+
		quoteIdent(table)+` WHERE _ferretdb_sjson->'$._id' = ?`,
		`"x"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

// ferretPlan asks FerretDB to explain find({_id: id}): the plan SQLite
// gives for the SQL that FerretDB itself generates.
//
// It runs that find first: SQLite compiles an EXPLAIN with the schema the
// connection last read, and only a real statement notices that the schema
// changed (an index added by another connection) and reads it again. So
// FerretDB's explain, on a pooled connection idle since before the index
// was created, still shows SCAN, while the lookup itself, re-prepared,
// uses the index. database/sql hands out the most recently used
// connection, which is the one the find just refreshed.
func ferretPlan(t *testing.T, c *mongo.Client, db, coll string, id any) string {
	t.Helper()
	findByID(t, c, db, coll, id)
	var res bson.M
	err := c.Database(db).RunCommand(context.Background(), bson.D{
		{Key: "explain", Value: bson.D{
			{Key: "find", Value: coll},
			{Key: "filter", Value: bson.D{{Key: "_id", Value: id}}},
		}},
	}).Decode(&res)
	if err != nil {
		t.Fatal(err)
	}
	if res["filterPushdown"] != true {
		t.Fatalf("explain: filter {_id} not pushed down: %v", res)
	}
	qp, _ := res["queryPlanner"].(bson.M)
	plan, _ := qp["Plan"].(bson.A)
	if len(plan) == 0 {
		t.Fatalf("explain: no queryPlanner.Plan in %v", res)
	}
	var s []string
	for _, p := range plan {
		s = append(s, fmt.Sprint(p))
	}
	return strings.Join(s, "; ")
}

func insertDocs(t *testing.T, c *mongo.Client, db, coll string, n int) []primitive.ObjectID {
	t.Helper()
	ids := make([]primitive.ObjectID, n)
	docs := make([]any, n)
	for i := range docs {
		ids[i] = primitive.NewObjectID()
		docs[i] = bson.D{{Key: "_id", Value: ids[i]},
			{Key: "n", Value: i}, {Key: "body", Value: "message text"}}
	}
	_, err := c.Database(db).Collection(coll).InsertMany(
		context.Background(), docs)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func findByID(t *testing.T, c *mongo.Client, db, coll string, id any) bson.M {
	t.Helper()
	var doc bson.M
	err := c.Database(db).Collection(coll).FindOne(context.Background(),
		bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if err != nil {
		t.Fatalf("find {_id: %v} in %s.%s: %v", id, db, coll, err)
	}
	return doc
}

func usesOurIndex(plan, table string) bool {
	return strings.Contains(plan, "SEARCH") &&
		strings.Contains(plan, "USING INDEX "+idIndexPrefix+table+" ")
}

// countLines counts the log lines that contain s.
func countLines(log, s string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// TestIDIndex: a collection created while devdb runs gets the index
// promptly, even though its first documents arrive before it; FerretDB's
// own _id query then uses it; a restart keeps it and does not recreate
// it; a collection indexed by nothing (data from before) gets it at start,
// before the server is ready.
func TestIDIndex(t *testing.T) {
	bin := devdbBin(t)
	dir := filepath.Join(t.TempDir(), "data")

	s := startDevdb(t, bin, dir)
	c := s.client(t)

	// the first documents arrive with the collection, before any index
	ids := insertDocs(t, c, "chat_idx", "messages", 500)

	// a string _id, a capped collection, a name with capitals, a dot, a
	// space and a quote, a second database
	_, err := c.Database("chat_idx").Collection("groups").InsertOne(
		context.Background(), bson.D{{Key: "_id", Value: "g-1"},
			{Key: "name", Value: "one"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Database("chat_idx").CreateCollection(context.Background(),
		"events", mopts.CreateCollection().SetCapped(true).
			SetSizeInBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	odd := "Odd name.with 'quote"
	oddIDs := insertDocs(t, c, "chat_idx", odd, 3)
	otherIDs := insertDocs(t, c, "other_db", "things", 3)

	chat := openFile(t, filepath.Join(dir, "chat_idx.sqlite"))
	other := openFile(t, filepath.Join(dir, "other_db.sqlite"))

	tables := map[string]string{}
	for _, coll := range []string{"messages", "groups", "events", odd} {
		tables[coll] = tableOf(t, chat, coll)
	}
	tables["other_db.things"] = tableOf(t, other, "things")

	took := waitIndex(t, chat, tables["messages"], 5*time.Second)
	t.Logf("messages indexed %s after its first insert returned", took)
	for coll, table := range tables {
		db := chat
		if coll == "other_db.things" {
			db = other
		}
		waitIndex(t, db, table, 5*time.Second)

		want := fmt.Sprintf(`CREATE INDEX "%s%s" ON "%s" (%s)`,
			idIndexPrefix, table, table, idExpr)
		if got := indexSQL(t, db, table); got != want {
			t.Errorf("%s: index is\n  %s\nwant\n  %s", coll, got, want)
		}
		if p := sqlitePlan(t, db, table); !usesOurIndex(p, table) {
			t.Errorf("%s: SQLite plan of FerretDB's _id query: %s", coll, p)
		}
	}

	// the plan of the query FerretDB really runs, by ObjectId and by string
	for _, q := range []struct {
		coll string
		id   any
	}{
		{"messages", ids[123]}, {"groups", "g-1"}, {odd, oddIDs[1]},
	} {
		p := ferretPlan(t, c, "chat_idx", q.coll, q.id)
		if !usesOurIndex(p, tables[q.coll]) {
			t.Errorf("explain find {_id} on %s: %s", q.coll, p)
		}
	}
	if p := ferretPlan(t, c, "other_db", "things", otherIDs[0]); !usesOurIndex(p, tables["other_db.things"]) {
		t.Errorf("explain find {_id} on other_db.things: %s", p)
	}

	// and the lookups still answer correctly
	if d := findByID(t, c, "chat_idx", "messages", ids[321]); d["n"] != int32(321) {
		t.Errorf("find {_id} on messages: %v", d)
	}
	if d := findByID(t, c, "chat_idx", "groups", "g-1"); d["name"] != "one" {
		t.Errorf("find {_id} on groups: %v", d)
	}

	// FerretDB does not see the index (listIndexes lists its own _id_)
	cur, err := c.Database("chat_idx").Collection("messages").Indexes().
		List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(context.Background(), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx) != 1 || idx[0]["name"] != "_id_" {
		t.Errorf("listIndexes: %v", idx)
	}

	// one log line per index created
	log := s.log()
	for coll := range tables {
		db, name := "chat_idx", coll
		if coll == "other_db.things" {
			db, name = "other_db", "things"
		}
		line := fmt.Sprintf("devdb: indexed _id of %s.%s for lookups", db, name)
		if n := countLines(log, line); n != 1 {
			t.Errorf("%d log lines %q, want 1; log:\n%s", n, line, log)
		}
	}

	// restart: the indexes stay, none is created again
	c.Disconnect(context.Background())
	s.stop()
	s = startDevdb(t, bin, dir)
	c = s.client(t)
	if got := countLines(s.log(), "devdb: indexed _id"); got != len(tables) {
		t.Errorf("after a restart: %d 'indexed' lines in all, want %d",
			got, len(tables))
	}
	if p := ferretPlan(t, c, "chat_idx", "messages", ids[7]); !usesOurIndex(p, tables["messages"]) {
		t.Errorf("after a restart, explain find {_id}: %s", p)
	}

	// a file from before (no index): indexed at start, before ready
	c.Disconnect(context.Background())
	s.stop()
	rw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "chat_idx.sqlite")+"?mode=rw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Exec(`DROP INDEX ` + quoteIdent(idIndexPrefix+tables["messages"])); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	if indexSQL(t, chat, tables["messages"]) != "" {
		t.Fatal("index still there after DROP INDEX")
	}
	s = startDevdb(t, bin, dir)
	if indexSQL(t, chat, tables["messages"]) == "" {
		t.Errorf("started on a file without the index: not indexed before "+
			"ready; log:\n%s", s.log())
	}
	c = s.client(t)
	if p := ferretPlan(t, c, "chat_idx", "messages", ids[9]); !usesOurIndex(p, tables["messages"]) {
		t.Errorf("after indexing at start, explain find {_id}: %s", p)
	}
}

// TestIDIndexOff: with -id-index=false nothing is added and FerretDB's
// _id query scans, which is what TestIDIndex would see without devdb's
// index.
func TestIDIndexOff(t *testing.T) {
	bin := devdbBin(t)
	dir := filepath.Join(t.TempDir(), "data")

	s := startDevdb(t, bin, dir, "-id-index=false")
	c := s.client(t)
	ids := insertDocs(t, c, "chat_idx", "messages", 50)
	time.Sleep(4 * idIndexInterval)

	db := openFile(t, filepath.Join(dir, "chat_idx.sqlite"))
	table := tableOf(t, db, "messages")
	if got := indexSQL(t, db, table); got != "" {
		t.Errorf("-id-index=false, yet: %s", got)
	}
	p := ferretPlan(t, c, "chat_idx", "messages", ids[0])
	if !strings.Contains(p, "SCAN") || strings.Contains(p, "USING INDEX") {
		t.Errorf("without the index, explain find {_id}: %s", p)
	}
	if n := countLines(s.log(), "devdb: indexed"); n != 0 {
		t.Errorf("-id-index=false logged %d 'indexed' lines", n)
	}
}

// TestIDIndexSQL: the statement, its quoting, its idempotence, and a
// failure that leaves the database usable.
func TestIDIndexSQL(t *testing.T) {
	if got, want := idIndexSQL(`a"b_0000abcd`),
		`CREATE INDEX IF NOT EXISTS "devdb_id$a""b_0000abcd" ON "a""b_0000abcd" (_ferretdb_sjson->'$._id')`; got != want {
		t.Errorf("idIndexSQL:\n got %s\nwant %s", got, want)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "x.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE _ferretdb_collections (name TEXT NOT NULL UNIQUE,
			table_name TEXT NOT NULL UNIQUE, settings TEXT NOT NULL) STRICT`,
		`CREATE TABLE "c_00000001" (_ferretdb_sjson TEXT NOT NULL) STRICT`,
		`INSERT INTO _ferretdb_collections VALUES ('c', 'c_00000001', '{}')`,
		`INSERT INTO "c_00000001" VALUES ('{"_id":"a"}')`,
		// listed, but its table is gone: skipped quietly
		`INSERT INTO _ferretdb_collections VALUES ('gone', 'gone_00000002', '{}')`,
		// a row whose JSON is broken: CREATE INDEX fails on it
		`CREATE TABLE "bad_00000003" (_ferretdb_sjson TEXT NOT NULL) STRICT`,
		`INSERT INTO _ferretdb_collections VALUES ('bad', 'bad_00000003', '{}')`,
		`INSERT INTO "bad_00000003" VALUES ('{not json')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	var out strings.Builder
	x := newIDIndexer(dir, &out)
	ctx := context.Background()
	x.sweep(ctx)
	x.sweep(ctx) // unchanged files: not even opened
	if _, err := db.Exec(`INSERT INTO "c_00000001" VALUES ('{"_id":"b"}')`); err != nil {
		t.Fatal(err)
	}
	x.sweep(ctx) // changed: looked at again, the failure not logged again

	log := out.String()
	if n := countLines(log, `devdb: indexed _id of x.c for lookups (index "devdb_id$c_00000001"`); n != 1 {
		t.Errorf("want one 'indexed' line for x.c, log:\n%s", log)
	}
	if n := countLines(log, "devdb: could not index _id of x.bad"); n != 1 {
		t.Errorf("want one failure line for x.bad, log:\n%s", log)
	}
	if strings.Contains(log, "gone") {
		t.Errorf("a dropped table was reported:\n%s", log)
	}
	if got := indexSQL(t, db, "c_00000001"); got == "" {
		t.Error("no index on c_00000001")
	}
	// the collection with the failed index still takes writes and reads
	if _, err := db.Exec(`INSERT INTO "bad_00000003" VALUES ('{"_id":"z"}')`); err != nil {
		t.Errorf("insert after a failed index: %v", err)
	}
	if err := createIDIndex(ctx, db, "c_00000001"); err != nil {
		t.Errorf("CREATE INDEX IF NOT EXISTS twice: %v", err)
	}
}

// TestIDIndexConcurrent: collections created and written to by several
// clients at once, while the watcher adds its indexes next to them: no
// write fails, every collection ends up indexed, no failure is logged.
func TestIDIndexConcurrent(t *testing.T) {
	bin := devdbBin(t)
	dir := filepath.Join(t.TempDir(), "data")
	s := startDevdb(t, bin, dir)
	c := s.client(t)

	const workers, colls, batches = 4, 8, 10
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := 0; i < colls; i++ {
				coll := c.Database("chat_conc").Collection(
					fmt.Sprintf("c%d_%d", w, i))
				for b := 0; b < batches; b++ {
					docs := make([]any, 50)
					for k := range docs {
						docs[k] = bson.D{{Key: "_id",
							Value: primitive.NewObjectID()},
							{Key: "k", Value: k}}
					}
					if _, err := coll.InsertMany(context.Background(), docs); err != nil {
						errs <- fmt.Errorf("%s: %v", coll.Name(), err)
						return
					}
					// and a lookup, whose table may be changing under it
					if err := coll.FindOne(context.Background(),
						bson.D{{Key: "_id", Value: docs[7].(bson.D)[0].Value}}).Err(); err != nil {
						errs <- fmt.Errorf("%s: find: %v", coll.Name(), err)
						return
					}
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	db := openFile(t, filepath.Join(dir, "chat_conc.sqlite"))
	for w := 0; w < workers; w++ {
		for i := 0; i < colls; i++ {
			table := tableOf(t, db, fmt.Sprintf("c%d_%d", w, i))
			waitIndex(t, db, table, 5*time.Second)
		}
	}
	log := s.log()
	if n := countLines(log, "devdb: indexed _id of chat_conc."); n != workers*colls {
		t.Errorf("%d 'indexed' lines, want %d", n, workers*colls)
	}
	if strings.Contains(log, "could not") || strings.Contains(log, "cannot") {
		t.Errorf("failures logged:\n%s", log)
	}
}
