package client

import (
	"io"
	"net/http"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
)

// corsWriter adds corsd's headers to the upstream handler's response at the
// last moment, when the status line is about to be written, so that they
// reach every response (errors from http.Error included) and win over
// whatever the handler set before.
//
// It forwards Flush and ReadFrom so streaming and sendfile keep working, and
// Unwrap so http.ResponseController reaches the underlying writer's other
// features (deadlines, hijacking, full duplex).
type corsWriter struct {
	http.ResponseWriter
	headers []*corsdv1.HttpHeader
	applied bool
}

func (w *corsWriter) apply() {
	if w.applied {
		return
	}
	w.applied = true
	applyHeaders(w.ResponseWriter.Header(), w.headers)
}

// WriteHeader adds the headers before the final status. Informational 1xx
// responses (such as 103 Early Hints) are sent as they are: the final
// response follows and gets the headers.
func (w *corsWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.apply()
	w.ResponseWriter.WriteHeader(code)
}

// Write adds the headers before the implicit 200 of a first Write.
func (w *corsWriter) Write(b []byte) (int, error) {
	w.apply()
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's io.ReaderFrom (sendfile for
// http.ServeContent of a file) available through the wrapper.
func (w *corsWriter) ReadFrom(r io.Reader) (int64, error) {
	w.apply()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	// writerOnly hides our own ReadFrom from io.Copy, which would recurse.
	return io.Copy(writerOnly{w.ResponseWriter}, r)
}

// Flush sends the headers with whatever is buffered, for handlers that
// stream; http.Flusher is how they ask.
func (w *corsWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush reporting failure; http.ResponseController.Flush uses
// it, so the headers are applied on that path too, and a writer that cannot
// flush reports http.ErrNotSupported as it would unwrapped.
func (w *corsWriter) FlushError() error {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *corsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }

// Interfaces a streaming handler looks for; the checks keep them from being
// lost in a refactor.
var (
	_ http.Flusher  = (*corsWriter)(nil)
	_ io.ReaderFrom = (*corsWriter)(nil)
)
