"""The web page's files (index.html, app.js, nametool.js, style.css), shipped as package data;
``nametool-run web`` (``nametool.runtime.website``) copies them into a site beside a model file."""
