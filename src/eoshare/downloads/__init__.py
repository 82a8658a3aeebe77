"""Getting the data out: signed links, byte ranges, bulk orders, resumable uploads,
Metalink manifests, and the client behind ``eoshare get``.

The HTTP side lives in ``eoshare.api.routes.downloads``/``orders``/``uploads``; this
package knows nothing about HTTP status codes (errors come from ``eoshare.errors``)."""
