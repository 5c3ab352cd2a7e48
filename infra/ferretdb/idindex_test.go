package main

// The indexer beside FerretDB's own connections: it must never be in the way of FerretDB creating
// a database. Run by `npm test` (test/integration/ferretdb-index.test.ts runs `go test` here).

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openAsFerretDB opens (creating it when missing) a database the way FerretDB v1.24 does: busy
// timeout first, then WAL, checked with a ping.
func openAsFerretDB(t *testing.T, file string) (*sql.DB, error) {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(wal)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Opaque: file, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// createCollection writes what FerretDB writes for one collection: its table and its metadata row.
func createCollection(t *testing.T, db *sql.DB, name, table string) {
	t.Helper()
	for _, q := range []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (name TEXT, table_name TEXT, settings TEXT)`, quoteIdent(metadataTable)),
		fmt.Sprintf(`CREATE TABLE %s (_ferretdb_sjson TEXT)`, quoteIdent(table)),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(fmt.Sprintf(`INSERT INTO %s VALUES (?, ?, '{}')`, quoteIdent(metadataTable)), name, table); err != nil {
		t.Fatal(err)
	}
}

func hasIDIndex(t *testing.T, db *sql.DB, table string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?`, idIndexName(table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// journalMode asks a connection of its own (a file's descriptor is never closed beside a live
// connection: that releases the process's locks on it).
func journalMode(t *testing.T, file string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return mode
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A database still in rollback mode is one FerretDB has not switched to WAL yet: a pass leaves it
// alone (neither switches its journal mode nor indexes it) and indexes it once it is in WAL mode.
func TestPassLeavesADatabaseNotInWALModeAlone(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fresh"+dbFileSuffix)
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	createCollection(t, db, "c", "c_1")
	if mode := journalMode(t, file); mode != "delete" {
		t.Fatalf("a new database is in rollback mode until a connection switches it; got %q", mode)
	}

	x := newIDIndexer(dir, quietLogger())
	x.pass(context.Background(), true)
	if mode := journalMode(t, file); mode != "delete" {
		t.Fatalf("the pass switched the database to %q: it would race FerretDB's own switch", mode)
	}
	if hasIDIndex(t, db, "c_1") {
		t.Fatal("the pass indexed a database not in WAL mode")
	}

	if _, err := db.Exec(`PRAGMA journal_mode=wal`); err != nil {
		t.Fatal(err)
	}
	x.pass(context.Background(), false)
	if !hasIDIndex(t, db, "c_1") {
		t.Fatal("the pass did not index the database once it was in WAL mode")
	}
}

// FerretDB creating a database at the moment a pass looks at the new file: no creation fails.
// Each round starts both at once on a new empty file (the file as FerretDB's first connection has
// just made it), FerretDB's open delayed by 0-240 µs to sweep the moment the pass opens the file.
// With the indexer switching journal modes itself, both connections tried to switch the file to
// WAL and SQLite refused one at once (SQLITE_BUSY, no busy wait): FerretDB's open failed in 4-5
// rounds of 1,000 in each of three runs (about 9 s each), so this test fails on that code in all
// but about one run in a hundred.
func TestCreatingDatabasesWhileAPassLooks(t *testing.T) {
	const rounds = 1000
	failed := 0
	var firstErr error
	for i := 0; i < rounds; i++ {
		// A directory of its own each round, so the pass reaches the file as fast as it can.
		dir := t.TempDir()
		x := newIDIndexer(dir, quietLogger())
		file := filepath.Join(dir, "new"+dbFileSuffix)
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var start, done sync.WaitGroup
		start.Add(1)
		done.Add(2)
		var openErr error
		go func() {
			defer done.Done()
			start.Wait()
			x.pass(context.Background(), false)
		}()
		go func() {
			defer done.Done()
			start.Wait()
			// Swept across the pass's first moments, where it opens the file.
			time.Sleep(time.Duration(i%25) * 10 * time.Microsecond)
			db, err := openAsFerretDB(t, file)
			if err != nil {
				openErr = err
				return
			}
			db.SetMaxOpenConns(1)
			createCollection(t, db, "c", "c_1")
			db.Close()
		}()
		start.Done()
		done.Wait()
		if openErr != nil {
			failed++
			if firstErr == nil {
				firstErr = openErr
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d databases failed to open as FerretDB opens them; first: %v", failed, rounds, firstErr)
	}
}
