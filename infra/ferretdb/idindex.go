package main

// The `_id` index FerretDB v1.24's SQLite backend lacks.
//
// FerretDB pushes a filter `{ _id: <string or ObjectId> }` down as
// `WHERE _ferretdb_sjson->'$._id' = ?` (find, and the per-document UPDATE and DELETE that follow),
// but builds its own unique `_id` index on `_ferretdb_sjson->"_id"`. SQLite uses an expression
// index only for the identical expression, so without help every point operation scans the table.
// The indexer below adds a plain (non-unique) index on exactly the pushed-down expression to every
// collection table, and keeps adding it as collections appear:
//
//   - one database = one `<name>.sqlite` file in the SQLite dir; its collections are the rows of
//     FerretDB's metadata table `_ferretdb_collections` (`name`, `table_name`, `settings`);
//   - FerretDB creates a collection's table before it inserts the metadata row, so a table named
//     there exists (unless it is being dropped; then CREATE INDEX fails and we try again later);
//   - FerretDB neither lists nor drops indexes it did not create (its index list lives in
//     `settings`), and DROP TABLE takes ours with the table;
//   - our index name starts with `coexist$`: FerretDB names its indexes `<table>_<index>` and a
//     table name never contains `$` (collection names cannot), so no FerretDB name can collide.
//
// Access alongside FerretDB's own connections: short-lived connections (open, look, create, close),
// with the same busy timeout FerretDB uses, opened with `mode=rw` so a database FerretDB has just
// dropped is never re-created as an empty file. A database is looked into only once it is in WAL
// mode (requireWAL), and our connection never sets a journal mode: FerretDB switches a new
// database to WAL on its first connection, and two connections switching one file at once
// deadlock, which SQLite answers at once with SQLITE_BUSY (no busy wait) to one of them. When that
// one was FerretDB's, the command that created the database failed ("database is locked"); CI saw
// it on a test's first createIndex. A reader of a database still in rollback mode is not in the
// way (the switch waits for it), but nothing of ours is to be found there before the switch. A pass opens a database only when
// its files changed since the last pass (or every fullScanEvery), so an idle store costs a few
// stat calls per tick. Never holding a connection between passes matters: FerretDB drops a
// database by closing its connections and deleting the file, and a connection of ours still open
// then keeps the WAL from being checkpointed and removed with it. What is left is the moment a
// pass itself has the file open (about a millisecond; an index build on a large existing
// collection at start, longer): a dropDatabase in exactly that moment, followed by re-creating the
// same database before our connection closes, could meet a stale WAL. The dev stack and the tests
// drop databases only at their end, under names never used again.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	// The SQLite driver FerretDB itself uses (already registered by it; imported for clarity).
	_ "modernc.org/sqlite"
)

const (
	metadataTable = "_ferretdb_collections"
	// idExpression is FerretDB v1.24's metadata.IDColumn: what a pushed-down `_id` filter compares.
	idExpression  = "_ferretdb_sjson->'$._id'"
	idIndexPrefix = "coexist$id$"
	dbFileSuffix  = ".sqlite"

	watchInterval = 250 * time.Millisecond
	fullScanEvery = 5 * time.Second
)

// idIndexName is the name of our index on a collection table.
func idIndexName(table string) string { return idIndexPrefix + table }

// quoteIdent quotes an SQLite identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// openDatabase opens an existing database file (never creates one) with FerretDB's busy timeout,
// leaving its journal mode as it is.
func openDatabase(file string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "rw")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Opaque: file, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// errNotWAL: the database is still in rollback mode, that is, FerretDB is creating it.
var errNotWAL = errors.New("not in WAL mode yet")

// requireWAL answers errNotWAL unless the database is in WAL mode. It asks SQLite (a read of the
// header under a shared lock, which a journal-mode switch waits for) and never opens the file
// itself: closing a descriptor of a file releases every POSIX lock this process holds on it,
// FerretDB's connections' included, which corrupts the database.
func requireWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return errNotWAL
	}
	return nil
}

// collectionTables returns collection name → table name from a database's metadata table, or an
// empty map when the table does not exist yet (a database FerretDB is still creating).
func collectionTables(ctx context.Context, db *sql.DB) (map[string]string, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, metadataTable).
		Scan(&n)
	if err != nil || n == 0 {
		return map[string]string{}, err
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT name, table_name FROM %s`, quoteIdent(metadataTable)))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	res := map[string]string{}
	for rows.Next() {
		var name, table string
		if err := rows.Scan(&name, &table); err != nil {
			return nil, err
		}
		res[name] = table
	}
	return res, rows.Err()
}

// fileSignature changes whenever SQLite writes a database (its main file or its WAL).
type fileSignature struct {
	ino                uint64
	size, walSize      int64
	mtimeNs, walMtimeN int64
}

func signatureOf(file string) (fileSignature, bool) {
	st, err := os.Stat(file)
	if err != nil {
		return fileSignature{}, false
	}
	sig := fileSignature{size: st.Size(), mtimeNs: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		sig.ino = sys.Ino
	}
	if wal, err := os.Stat(file + "-wal"); err == nil {
		sig.walSize, sig.walMtimeN = wal.Size(), wal.ModTime().UnixNano()
	}
	return sig, true
}

// idIndexer adds the `_id` index to the collection tables of every database in dir.
type idIndexer struct {
	dir  string
	log  *slog.Logger
	seen map[string]fileSignature // database file → signature at its last successful pass
}

func newIDIndexer(dir string, log *slog.Logger) *idIndexer {
	return &idIndexer{dir: dir, log: log, seen: map[string]fileSignature{}}
}

// pass looks at every database whose files changed (all of them when full) and creates the
// missing indexes. Errors are logged; a database that failed is tried again on the next pass.
func (x *idIndexer) pass(ctx context.Context, full bool) {
	files, err := filepath.Glob(filepath.Join(x.dir, "*"+dbFileSuffix))
	if err != nil {
		x.log.Warn("id index: listing databases", slog.Any("error", err))
		return
	}
	present := map[string]bool{}
	for _, file := range files {
		if ctx.Err() != nil {
			return
		}
		present[file] = true
		sig, ok := signatureOf(file)
		if !ok {
			continue
		}
		if old, known := x.seen[file]; known && old == sig && !full {
			continue
		}
		err := x.ensureDatabase(ctx, file)
		if errors.Is(err, errNotWAL) {
			continue // FerretDB is still creating it: looked at on a later pass
		}
		if err != nil && ctx.Err() == nil {
			// Typically a collection dropped between our look and our CREATE INDEX. Tried again when
			// the database changes next, or at the next full pass (so a lasting fault warns at most
			// that often).
			x.log.Warn("id index: not all collections indexed; will retry", slog.String("file", file), slog.Any("error", err))
		}
		// The signature from before the look: a change made meanwhile (by FerretDB, or by our own
		// CREATE INDEX) makes the next pass look again.
		x.seen[file] = sig
	}
	for file := range x.seen {
		if !present[file] {
			delete(x.seen, file)
		}
	}
}

// openWithTables opens one database file and reads its collection tables; the caller closes db.
func openWithTables(ctx context.Context, file string) (*sql.DB, map[string]string, error) {
	db, err := openDatabase(file)
	if err != nil {
		return nil, nil, err
	}
	if err := requireWAL(ctx, db); err != nil {
		db.Close()
		return nil, nil, err
	}
	tables, err := collectionTables(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, tables, nil
}

// ensureDatabase creates the missing `_id` indexes of one database.
func (x *idIndexer) ensureDatabase(ctx context.Context, file string) error {
	db, tables, err := openWithTables(ctx, file)
	if err != nil {
		return err
	}
	defer db.Close()
	if len(tables) == 0 {
		return nil
	}
	existing := map[string]bool{}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE ? ESCAPE '\'`,
		strings.ReplaceAll(idIndexPrefix, "_", `\_`)+"%")
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		existing[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	var errs []error
	for coll, table := range tables {
		name := idIndexName(table)
		if existing[name] {
			continue
		}
		start := time.Now()
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (%s)`, quoteIdent(name), quoteIdent(table), idExpression)
		if _, err := db.ExecContext(ctx, q); err != nil {
			errs = append(errs, fmt.Errorf("%s (table %s): %w", coll, table, err))
			continue
		}
		x.log.Info("id index created",
			slog.String("database", strings.TrimSuffix(filepath.Base(file), dbFileSuffix)),
			slog.String("collection", coll), slog.String("index", name),
			slog.Duration("took", time.Since(start)))
	}
	return errors.Join(errs...)
}

// run makes a full pass, then watches until ctx is done. The returned function waits for it.
func (x *idIndexer) run(ctx context.Context) (wait func()) {
	x.pass(ctx, true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(watchInterval)
		defer tick.Stop()
		lastFull := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				full := time.Since(lastFull) >= fullScanEvery
				if full {
					lastFull = time.Now()
				}
				x.pass(ctx, full)
			}
		}
	}()
	return wg.Wait
}

// explain prints SQLite's plan for the statements FerretDB v1.24 runs for a point operation by
// `_id` on one collection (find, then the per-document update or delete), plus the indexes the
// collection table has.
func explain(ctx context.Context, dir, dbName, collection string) error {
	file := filepath.Join(dir, dbName+dbFileSuffix)
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("no database %q in %s: %w", dbName, dir, err)
	}
	db, tables, err := openWithTables(ctx, file)
	if err != nil {
		return err
	}
	defer db.Close()
	table, ok := tables[collection]
	if !ok {
		return fmt.Errorf("no collection %q in database %q", collection, dbName)
	}
	t := quoteIdent(table)
	statements := []struct{ op, sql string }{
		{"find", fmt.Sprintf(`SELECT _ferretdb_sjson FROM %s WHERE %s = ?`, t, idExpression)},
		{"update", fmt.Sprintf(`UPDATE %s SET _ferretdb_sjson = ? WHERE %s = ?`, t, idExpression)},
		{"delete", fmt.Sprintf(`DELETE FROM %s WHERE %s IN (?)`, t, idExpression)},
	}
	fmt.Printf("table %s\n", table)
	rows, err := db.QueryContext(ctx, `SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? ORDER BY name`, table)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return err
		}
		fmt.Printf("index %s: %s\n", name, def)
	}
	rows.Close()
	for _, s := range statements {
		args := []any{`"x"`}
		if s.op == "update" {
			args = []any{`{}`, `"x"`}
		}
		plan, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+s.sql, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", s.op, err)
		}
		for plan.Next() {
			var id, parent, unused int
			var detail string
			if err := plan.Scan(&id, &parent, &unused, &detail); err != nil {
				plan.Close()
				return err
			}
			fmt.Printf("%s: %s\n", s.op, detail)
		}
		plan.Close()
		if err := plan.Err(); err != nil {
			return err
		}
	}
	return nil
}
