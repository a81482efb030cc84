"""``ecgbio serve``: the gallery as an HTTP identity service (enrol, identify, verify, ...).

Why FastAPI on uvicorn: requests are declared as typed models (pydantic), so a bad field is
refused with a precise message before any ECG is touched; the same models generate the OpenAPI
description and the interactive docs at ``/docs``; it is the Python ecosystem's common choice for
such services (well kept, widely known, ASGI so uploads stream), and uvicorn serves it with TLS
from two options. The service stays a thin layer: every decision, refusal and JSON shape comes
from :class:`ecgbio.gallery.Gallery` and its result objects, exactly as the CLI's ``--json``.

One module per job:

* :mod:`~ecgbio.service.settings`: the command line's settings, the token and where it may
  listen (refusals before anything starts);
* :mod:`~ecgbio.service.auth`: the bearer-token check;
* :mod:`~ecgbio.service.limits`: the request size limit (413 before the body is read);
* :mod:`~ecgbio.service.deadlines`: slow and idle clients (408 past a request's deadline, a cap
  on each worker's connections);
* :mod:`~ecgbio.service.schemas`: the typed requests;
* :mod:`~ecgbio.service.uploads`: records from a request (JSON samples, WFDB pairs, EDF/BDF/CSV
  files) staged in a private temporary folder;
* :mod:`~ecgbio.service.engine`: the model and the gallery, shared by all requests;
* :mod:`~ecgbio.service.problems`: errors as one-line JSON with the right status;
* :mod:`~ecgbio.service.app`: the FastAPI application; :mod:`~ecgbio.service.server`: uvicorn.

See docs/service.md.
"""

from ecgbio.service.settings import ServiceSettings

__all__ = ["ServiceSettings"]
