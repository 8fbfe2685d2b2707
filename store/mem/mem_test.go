package mem

import (
	"testing"

	"moonbit-registry/store"
	"moonbit-registry/store/recordstest"
	"moonbit-registry/store/storetest"
)

func TestCompliance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness { return storetest.Harness{Store: New()} })
}

func TestRecordsCompliance(t *testing.T) {
	recordstest.Run(t, func(t *testing.T) store.Records { return NewRecords() })
}
