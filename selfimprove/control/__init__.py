"""The loop's control: stop rules over recorded metrics (`rules`), label-free health monitors (`health`), and the choice
of the model on the dev split (`choice`). Pure functions over numbers and sample rows: no model, no run folder."""
