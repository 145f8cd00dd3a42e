"""Training: the shared loop (:mod:`.trainer`), datasets built from episodes (:mod:`.data`) and
one recipe per model (:mod:`.codec`, :mod:`.video`)."""
