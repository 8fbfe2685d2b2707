// Package recordstest is the behaviour every store.Records
// implementation shares (the disk store's Records, the S3 store's
// Objects), checked once: Run(t, newRecords). Only tests import it.
package recordstest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"moonbit-registry/store"
)

// Run checks the conditional-write contract on fresh, empty Records made
// by newRecords (one per subtest).
func Run(t *testing.T, newRecords func(t *testing.T) store.Records) {
	tests := []struct {
		name string
		fn   func(t *testing.T, r store.Records)
	}{
		{"CreateOnlyIfAbsent", testCreateTwice},
		{"CreateETagIsReadETag", testCreateETag},
		{"SwapWithTheETag", testSwap},
		{"SwapWithAStaleETagChangesNothing", testSwapStale},
		{"SwapMissing", testSwapMissing},
		{"ReadMissing", testReadMissing},
		{"ReadAgeOfAFreshRecord", testAge},
		{"ListIsTheCreatedKeys", testList},
		{"ListEmpty", testListEmpty},
		{"ConcurrentCreatesOneWins", testConcurrentCreate},
		{"ConcurrentSwapsOneWins", testConcurrentSwap},
		{"LargeBodyWholeOrRefused", testLargeBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newRecords(t)) })
	}
}

// Keys the suite writes: record keys as the registry makes them, nested
// modules, prerelease and build metadata, non-ASCII.
const (
	keyPlain  = "acme/lib@1.0.0"
	keyNested = "acme/a/b@0.1.0-rc.1"
	keyBuild  = "acme/lib@1.0.0+build.5"
	keyEmoji  = "illusory0x0/🐫@0.1.2"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func create(t *testing.T, r store.Records, key string, body []byte) string {
	t.Helper()
	etag, created, err := r.Create(ctx(t), key, body)
	if err != nil || !created {
		t.Fatalf("Create(%s) = %q, %v, %v; want created", key, etag, created, err)
	}
	if etag == "" {
		t.Fatalf("Create(%s) returned no ETag", key)
	}
	return etag
}

// expect checks key holds body; it returns the ETag Read gives.
func expect(t *testing.T, r store.Records, key string, body []byte) string {
	t.Helper()
	got, etag, _, found, err := r.Read(ctx(t), key)
	if err != nil || !found {
		t.Fatalf("Read(%s) = found %v, %v; want %q", key, found, err, body)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("Read(%s) = %q, want %q", key, got, body)
	}
	if etag == "" {
		t.Fatalf("Read(%s) returned no ETag", key)
	}
	return etag
}

func testCreateTwice(t *testing.T, r store.Records) {
	first := []byte(`{"state":"pending","n":1}`)
	etag := create(t, r, keyPlain, first)
	for _, body := range [][]byte{[]byte(`{"state":"published","n":2}`), first} {
		etag2, created, err := r.Create(ctx(t), keyPlain, body)
		if err != nil || created {
			t.Errorf("second Create(%s, %s) = %q, %v, %v; want not created, no error", keyPlain, body, etag2, created, err)
		}
	}
	if got := expect(t, r, keyPlain, first); got != etag {
		t.Errorf("ETag after a refused Create = %s, want %s still", got, etag)
	}
}

func testCreateETag(t *testing.T, r store.Records) {
	for _, key := range []string{keyPlain, keyNested, keyBuild, keyEmoji} {
		body := []byte(fmt.Sprintf(`{"key":%q}`, key))
		etag := create(t, r, key, body)
		if got := expect(t, r, key, body); got != etag {
			t.Errorf("Read(%s) ETag = %s, Create returned %s", key, got, etag)
		}
	}
}

func testSwap(t *testing.T, r store.Records) {
	for _, key := range []string{keyPlain, keyNested, keyEmoji} {
		old := []byte(`{"state":"pending"}`)
		etag := create(t, r, key, old)
		next := []byte(`{"state":"published"}`)
		newETag, swapped, err := r.Swap(ctx(t), key, next, etag)
		if err != nil || !swapped {
			t.Fatalf("Swap(%s) with the current ETag = %q, %v, %v; want swapped", key, newETag, swapped, err)
		}
		if newETag == "" || newETag == etag {
			t.Errorf("Swap(%s) returned ETag %q; want a new one, not %q", key, newETag, etag)
		}
		if got := expect(t, r, key, next); got != newETag {
			t.Errorf("Read(%s) ETag after Swap = %s, Swap returned %s", key, got, newETag)
		}
		// And again, from the ETag the swap returned.
		last := []byte(`{"state":"published","yanked":true}`)
		etag3, swapped, err := r.Swap(ctx(t), key, last, newETag)
		if err != nil || !swapped {
			t.Fatalf("Swap(%s) with the ETag of the previous Swap = %q, %v, %v; want swapped", key, etag3, swapped, err)
		}
		if etag3 == newETag || etag3 == etag {
			t.Errorf("third ETag %s repeats an earlier one", etag3)
		}
		expect(t, r, key, last)
	}
}

func testSwapStale(t *testing.T, r store.Records) {
	first := []byte(`{"v":1}`)
	etag1 := create(t, r, keyPlain, first)
	second := []byte(`{"v":2}`)
	etag2, swapped, err := r.Swap(ctx(t), keyPlain, second, etag1)
	if err != nil || !swapped {
		t.Fatalf("Swap = %v, %v; want swapped", swapped, err)
	}
	for _, stale := range []string{etag1, `"0123456789abcdef0123456789abcdef"`, "nonsense"} {
		got, swapped, err := r.Swap(ctx(t), keyPlain, []byte(`{"v":3}`), stale)
		if err != nil || swapped {
			t.Errorf("Swap with stale ETag %s = %q, %v, %v; want not swapped, no error", stale, got, swapped, err)
		}
	}
	if got := expect(t, r, keyPlain, second); got != etag2 {
		t.Errorf("ETag after refused swaps = %s, want %s", got, etag2)
	}
}

func testSwapMissing(t *testing.T, r store.Records) {
	// An ETag of a record that exists elsewhere, and one never given.
	etag := create(t, r, keyPlain, []byte(`{"v":1}`))
	for _, e := range []string{etag, `"d41d8cd98f00b204e9800998ecf8427e"`} {
		got, swapped, err := r.Swap(ctx(t), keyNested, []byte(`{"v":2}`), e)
		if err != nil || swapped {
			t.Errorf("Swap(missing %s, %s) = %q, %v, %v; want not swapped, no error", keyNested, e, got, swapped, err)
		}
	}
	if _, _, _, found, err := r.Read(ctx(t), keyNested); err != nil || found {
		t.Errorf("Read(%s) after a Swap of a missing key = found %v, %v; want absent", keyNested, found, err)
	}
	keys, err := r.List(ctx(t))
	if err != nil || !slices.Equal(keys, []string{keyPlain}) {
		t.Errorf("List = %q, %v; want only %s", keys, err, keyPlain)
	}
}

func testReadMissing(t *testing.T, r store.Records) {
	for _, key := range []string{keyPlain, keyNested} {
		body, etag, _, found, err := r.Read(ctx(t), key)
		if err != nil || found || body != nil || etag != "" {
			t.Errorf("Read(%s) of an empty store = %q, %q, found %v, %v; want not found, no error", key, body, etag, found, err)
		}
	}
	// A key below an existing one is missing too.
	create(t, r, "acme/a@1.0.0", []byte(`{}`))
	if _, _, _, found, err := r.Read(ctx(t), keyNested); err != nil || found {
		t.Errorf("Read(%s) = found %v, %v; want not found", keyNested, found, err)
	}
}

func testAge(t *testing.T, r store.Records) {
	create(t, r, keyPlain, []byte(`{}`))
	_, _, age, found, err := r.Read(ctx(t), keyPlain)
	if err != nil || !found {
		t.Fatalf("Read = %v, %v", found, err)
	}
	// Servers date to the second; a fresh record is well under the
	// registry's ten-minute takeover of a dead publish.
	if age < 0 || age > time.Minute {
		t.Errorf("age of a record just created = %s, want between 0 and a minute", age)
	}
}

func testList(t *testing.T, r store.Records) {
	want := []string{keyPlain, keyNested, keyBuild, keyEmoji, "acme/a@1.0.0", "zz/top@2.0.0"}
	for i, key := range want {
		create(t, r, key, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	// A swap and a refused create add nothing.
	etag := expect(t, r, keyPlain, []byte(`{"n":0}`))
	if _, ok, err := r.Swap(ctx(t), keyPlain, []byte(`{"n":9}`), etag); err != nil || !ok {
		t.Fatalf("Swap = %v, %v", ok, err)
	}
	if _, ok, err := r.Create(ctx(t), keyNested, []byte(`{}`)); err != nil || ok {
		t.Fatalf("Create of an existing key = %v, %v", ok, err)
	}
	got, err := r.List(ctx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

func testListEmpty(t *testing.T, r store.Records) {
	keys, err := r.List(ctx(t))
	if err != nil || len(keys) != 0 {
		t.Errorf("List of empty records = %q, %v; want none", keys, err)
	}
}

const writers = 8

func testConcurrentCreate(t *testing.T, r store.Records) {
	oneWins(t, r, "Create", func(c context.Context, body []byte) (string, bool, error) {
		return r.Create(c, keyNested, body)
	})
}

func testConcurrentSwap(t *testing.T, r store.Records) {
	etag := create(t, r, keyNested, []byte(`{"writer":"none"}`))
	oneWins(t, r, "Swap", func(c context.Context, body []byte) (string, bool, error) {
		return r.Swap(c, keyNested, body, etag)
	})
}

// oneWins runs write from several writers at once, each with its own
// body, and checks that exactly one succeeded and its body and ETag are
// what Read sees.
func oneWins(t *testing.T, r store.Records, op string, write func(c context.Context, body []byte) (string, bool, error)) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
		etags   = map[int]string{}
	)
	c := ctx(t)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			etag, ok, err := write(c, []byte(fmt.Sprintf(`{"writer":%d}`, i)))
			if err != nil {
				t.Errorf("%s by writer %d: %v", op, i, err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, i)
				etags[i] = etag
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent %ss succeeded (%v), want exactly 1", len(winners), writers, op, winners)
	}
	w := winners[0]
	if got := expect(t, r, keyNested, []byte(fmt.Sprintf(`{"writer":%d}`, w))); got != etags[w] {
		t.Errorf("ETag = %s, the winner got %s", got, etags[w])
	}
}

// testLargeBody: a record of a few hundred KiB (a manifest may carry a
// long description, and moon.mod.json may be up to 1 MiB) is either
// refused when written or read back whole; never cut short silently.
func testLargeBody(t *testing.T, r store.Records) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	body = append(append([]byte(`{"description":"`), body...), `"}`...)
	_, created, err := r.Create(ctx(t), keyPlain, body)
	if err != nil {
		t.Logf("Create of %d bytes refused: %v", len(body), err)
		return
	}
	if !created {
		t.Fatalf("Create of %d bytes = not created, no error", len(body))
	}
	got, _, _, found, err := r.Read(ctx(t), keyPlain)
	if err != nil {
		t.Logf("Read of %d bytes refused: %v", len(body), err)
		return
	}
	if !found || !bytes.Equal(got, body) {
		t.Errorf("Read of a %d-byte record = found %v, %d bytes; want it whole or an error", len(body), found, len(got))
	}
}
