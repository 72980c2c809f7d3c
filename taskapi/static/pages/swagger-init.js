// Starts Swagger UI on /docs (a file, not an inline script, so the page needs no inline code).
// The document's URL comes from the page; no validator badge (it would call
// validator.swagger.io, which the site's Content-Security-Policy refuses and offline fails).
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null,
  });
});
