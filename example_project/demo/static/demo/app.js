// The example site's page: submit through django-evolink's REST API, watch the task,
// show the results and the user's recent tasks. Plain browser JavaScript, no build step.
(function () {
  "use strict";

  var form = document.getElementById("task-form");
  if (!form) { return; }
  // Every sentence the page shows, through Django's JavaScript catalogue (the page loads
  // demo:jsi18n first; `make messages` collects these into djangojs.po). %s: a value.
  var T = {
    sending: gettext("Sending your request…"),
    uploading: gettext("Uploading the images and sending the request…"),
    network: gettext("Could not reach this site. Check your connection and try again."),
    login: gettext("Your session has ended: log in again."),
    forbidden: gettext("You are not allowed to do that."),
    not_found: gettext("This task no longer exists."),
    validation: gettext("Please correct the fields marked below."),
    both_sources: gettext("Use either image files or image URLs, not both."),
    no_images: gettext("Choose one or two image files, or paste one or two image URLs."),
    no_prompt: gettext("Write a prompt: what the new images should show."),
    out_of_credits: gettext("Out of credits: the image service has no credits left for " +
                            "this site. Try again later."),
    rate_limited: gettext("Too many requests: please wait %s seconds before trying again."),
    evolink_down: gettext("The image service (Evolink) is down or not configured " +
                          "correctly."),
    server_error: gettext("The site failed to answer (HTTP %s). Try again later."),
    refresh_failed: gettext("Could not ask Evolink for news just now; still waiting…"),
    task_failed: gettext("The task failed: %s"),
    task_cancelled: gettext("The task was cancelled by Evolink."),
    storing: gettext("Done. Copying the images into the site's storage…"),
    no_tasks: gettext("No tasks yet: your tasks will be listed here."),
    retry_in: gettext("Wait %s s"),
    generate: gettext("Generate"),
    image_alt: gettext("Generated image %s"),
    open: gettext("open"),
    status_queued: gettext("queued: saved, not yet accepted by Evolink"),
    status_pending: gettext("pending: waiting for Evolink to start"),
    status_processing: gettext("processing: %s%%"),
    status_completed: gettext("completed"),
    status_failed: gettext("failed"),
    status_cancelled: gettext("cancelled"),
    images_legend: gettext("Images: choose up to %s files…"),
    image_rules: gettext("Allowed: %s."),
    any_image: gettext("any image"),
    model_default: gettext("(the model's default)"),
    yes: gettext("yes"),
    no: gettext("no"),
    about_tokens: gettext("about %s tokens (checked by Evolink)"),
    text_to_image: gettext("This model makes images from the prompt alone: it takes no " +
                           "images."),
    bad_json: gettext("Not valid JSON."),
    models_failed: gettext("Could not load the list of models; the default model is used.")
  };
  function doneText(count) {
    return fmt(ngettext("Done: %s image.", "Done: %s images.", count), count);
  }
  var PLACEHOLDER = "00000000-0000-0000-0000-000000000000";
  var FINAL = ["completed", "failed", "cancelled"];
  // The task is followed through its event stream (GET tasks/{id}/events/, EventSource);
  // without one (an old browser, a proxy that breaks streams) the page asks for the task
  // with If-None-Match every POLL_MS: a 304 costs nothing, and each request keeps the task
  // "watched", so the site polls Evolink every few seconds for it (no refresh/ needed).
  var POLL_MS = 1500;
  var STORE_WAIT_TICKS = 60;   // after completion, wait this long for the stored copies

  var el = function (id) { return document.getElementById(id); };
  var submitButton = el("submit");
  var message = el("message");
  var current = null;          // {id, storeTicks, timer, source, etag}

  function fmt(template, value) {
    return template.replace("%s", value === undefined ? "" : String(value)).replace("%%", "%");
  }
  function csrfToken() {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }
  function detailUrl(id) { return form.dataset.detailUrl.replace(PLACEHOLDER, id); }
  function eventsUrl(id) { return form.dataset.eventsUrl.replace(PLACEHOLDER, id); }

  function showMessage(text, kind) {
    message.textContent = text;
    message.className = "alert " + (kind || "error");
    message.hidden = !text;
  }
  function clearErrors() {
    showMessage("");
    form.querySelectorAll(".field-error").forEach(function (p) {
      p.textContent = ""; p.hidden = true;
    });
    form.querySelectorAll(".invalid").forEach(function (n) { n.classList.remove("invalid"); });
  }
  function fieldError(field, messages) {
    var target = form.querySelector('.field-error[data-field="' + field + '"]') ||
                 form.querySelector('.field-error[data-field="non_field_errors"]');
    var text = [].concat(messages).map(function (m) {
      return typeof m === "string" ? m : JSON.stringify(m);
    }).join(" ");
    target.textContent = (target.dataset.field === field ? "" : field + ": ") + text;
    target.hidden = false;
    var input = null;
    try { input = form.querySelector('[name="' + field + '"], #' + field); } catch (e) { input = null; }
    if (input) { input.classList.add("invalid"); }
  }

  // A new submit starts afresh: a task that failed before is not left on screen beside
  // the new errors (it stays in "Your recent tasks").
  function forgetOldFailure() {
    var box = el("current");
    if (!box.hidden && ["failed", "cancelled"].indexOf(box.dataset.status) >= 0) {
      if (current && current.timer) { clearTimeout(current.timer); }
      current = null;
      box.hidden = true;
    }
  }

  // One request to the API. Resolves to {status, data, headers}; rejects on network errors.
  function api(method, url, body) {
    var options = {method: method, credentials: "same-origin",
                   headers: {"Accept": "application/json"}};
    if (method !== "GET") { options.headers["X-CSRFToken"] = csrfToken(); }
    if (body instanceof FormData) {
      options.body = body;  // the browser sets the multipart boundary
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return {status: response.status, data: data, headers: response.headers};
      });
    });
  }

  // Turn an error answer into messages on the page (every status the API can answer).
  function showApiError(answer) {
    var data = answer.data || {};
    var detail = data.detail || "";
    switch (answer.status) {
      case 400:
        if (data.code && data.detail) {            // Evolink refused the task
          showMessage(detail);                      // the API's sentence says who refused
        } else {                                    // field-keyed validation errors
          showMessage(T.validation);
          Object.keys(data).forEach(function (field) { fieldError(field, data[field]); });
        }
        break;
      case 401: showMessage(T.login); break;
      case 403: showMessage(data.code === "not_authenticated" ? T.login : T.forbidden); break;
      case 404: showMessage(T.not_found); break;
      case 429:
        var wait = parseInt(answer.headers.get("Retry-After") || "60", 10);
        showMessage(fmt(T.rate_limited, wait));
        blockSubmit(wait);
        break;
      // the API's own sentence when it sent one (it says what happened, in the page's
      // language); the page's only when it did not: never the two run together
      case 502: showMessage(detail || T.evolink_down); break;
      case 503: showMessage(detail || T.out_of_credits); break;
      default: showMessage(fmt(T.server_error, answer.status));
    }
    if (data.task) { showTask(data.task); loadRecent(); }
  }

  function blockSubmit(seconds) {
    var left = seconds;
    submitButton.disabled = true;
    var tick = function () {
      if (left <= 0) {
        submitButton.disabled = false;
        submitButton.textContent = T.generate;
        return;
      }
      submitButton.textContent = fmt(T.retry_in, left);
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }

  // ---- the model picker: the form is built from GET models/ (each model's JSON Schema) --
  var models = {};             // name -> JSON Schema of its create body
  var firstModel = el("model").value;  // the one whose image rules the page states
  var CORE = ["model", "prompt", "image_urls", "n"];

  function props(name) { return (models[name] || {properties: {}}).properties; }
  function takes(name, param) { return Object.prototype.hasOwnProperty.call(props(name), param); }

  function option(select, value, text, selected) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text; o.selected = !!selected;
    select.appendChild(o);
  }

  function paramInput(name, schema) {
    var input;
    var choices = schema.enum || (schema.anyOf || []).reduce(function (all, alt) {
      return all.concat(alt.enum || []);
    }, []);
    if (schema.type === "boolean") {
      input = document.createElement("select");
      option(input, "", T.model_default, true);
      option(input, "true", T.yes); option(input, "false", T.no);
    } else if (schema.enum) {
      input = document.createElement("select");
      option(input, "", T.model_default, true);
      schema.enum.forEach(function (v) { option(input, String(v), String(v)); });
    } else if (schema.type === "object" || schema.type === "array") {
      input = document.createElement("textarea");
      input.rows = 2; input.placeholder = "{}";
    } else {
      input = document.createElement("input");
      input.type = (schema.type === "integer" || schema.type === "number") ? "number" : "text";
      if (schema.minimum !== undefined) { input.min = schema.minimum; }
      if (schema.maximum !== undefined) { input.max = schema.maximum; }
      if (schema.type === "number") { input.step = "any"; }
      if (schema.maxLength) { input.maxLength = schema.maxLength; }
      if (choices.length) {
        var list = document.createElement("datalist");
        list.id = "choices-" + name;
        choices.forEach(function (v) { option(list, String(v), String(v)); });
        input.setAttribute("list", list.id);
        input.placeholder = choices.slice(0, 4).join(", ") + (schema.anyOf ? ", 1024x1024" : "");
        input.dataset.datalist = "1";
        input._datalist = list;
      }
    }
    input.id = "param-" + name;
    input.name = name;
    input.dataset.type = schema.type || "string";
    return input;
  }

  function buildParams(name) {
    var box = el("params");
    box.innerHTML = "";
    var schema = props(name);
    Object.keys(schema).forEach(function (param) {
      if (CORE.indexOf(param) >= 0) { return; }
      var label = document.createElement("label");
      label.htmlFor = "param-" + param;
      label.textContent = param + (schema[param].default !== undefined
        ? " (" + JSON.stringify(schema[param].default) + ")" : "");
      var input = paramInput(param, schema[param]);
      var error = document.createElement("p");
      error.className = "field-error"; error.dataset.field = param; error.hidden = true;
      box.appendChild(label); box.appendChild(input);
      if (input._datalist) { box.appendChild(input._datalist); }
      box.appendChild(error);
    });
  }

  function applyModel(name) {
    var schema = props(name);
    var prompt = schema.prompt || {};
    el("prompt").maxLength = prompt.maxLength || 100000;
    el("prompt").closest("form").querySelector('label[for="prompt"]').hidden = !schema.prompt;
    el("prompt").hidden = !schema.prompt;
    var images = schema.image_urls;
    el("images-fieldset").hidden = !images;
    el("urls-fieldset").hidden = !images;
    var note = el("model-note");
    note.textContent = images ? (prompt["x-max-tokens"] ? fmt(T.about_tokens,
      prompt["x-max-tokens"]) : "") : T.text_to_image;
    if (images) {
      var max = images.maxItems || 16;
      form.querySelector("#images-fieldset legend").textContent = fmt(T.images_legend, max);
      el("image1").multiple = max > 2;
      el("image-rules").hidden = name !== firstModel;
      if (name !== firstModel) {
        el("image1").accept = "image/*"; el("image2").accept = "image/*";
      }
      el("image2").hidden = max < 2;
      el("url2").hidden = max < 2;
    }
    var nField = el("n-field");
    nField.hidden = !schema.n;
    if (schema.n) {
      var select = el("n");
      var keep = select.value;
      select.innerHTML = "";
      for (var i = schema.n.minimum || 1; i <= (schema.n.maximum || 1); i++) {
        option(select, String(i), String(i), String(i) === keep);
      }
    }
    buildParams(name);
  }

  function loadModels() {
    var picker = el("model");
    return api("GET", form.dataset.modelsUrl).then(function (answer) {
      if (answer.status !== 200) { showMessage(T.models_failed); return; }
      var chosen = picker.value;
      picker.innerHTML = "";
      answer.data.forEach(function (model) {
        models[model.name] = model.parameters;
        option(picker, model.name, model.name, model.name === chosen || (model.default && !chosen));
      });
      applyModel(picker.value);
      form.dataset.modelsLoaded = "1";
    }, function () { showMessage(T.models_failed); });
  }
  el("model").addEventListener("change", function () { clearErrors(); applyModel(el("model").value); });

  function paramValues() {
    var values = {};
    var bad = null;
    el("params").querySelectorAll("input, select, textarea").forEach(function (input) {
      var text = input.value.trim();
      if (!text) { return; }
      var type = input.dataset.type;
      if (type === "integer" || type === "number") {
        values[input.name] = Number(text);
      } else if (type === "boolean") {
        values[input.name] = text === "true";
      } else if (type === "object" || type === "array") {
        try { values[input.name] = JSON.parse(text); } catch (e) { bad = bad || input.name; }
      } else {
        values[input.name] = text;
      }
    });
    return {values: values, bad: bad};
  }

  function buildRequest() {
    var name = el("model").value;
    var schema = props(name);
    var files = [].slice.call(el("image1").files).concat(
      [].slice.call(el("image2").files)).filter(Boolean);
    var urls = [el("url1").value.trim(), el("url2").value.trim()].filter(Boolean);
    var prompt = el("prompt").value;
    var n = parseInt(el("n").value, 10);
    var params = paramValues();
    var required = models[name] ? (models[name].required || []) : ["prompt", "image_urls"];
    var takesImages = !models[name] || takes(name, "image_urls");
    var needsImages = !models[name] || (schema.image_urls && required.indexOf("image_urls") >= 0);
    var needsPrompt = !models[name] || (schema.prompt && required.indexOf("prompt") >= 0);
    if (!takesImages) { files = []; urls = []; }
    // every problem at once: one submit flags each field that needs attention
    var errors = [];
    if (needsPrompt && !prompt.trim()) { errors.push(["prompt", T.no_prompt]); }
    if (files.length && urls.length) { errors.push(["images", T.both_sources]); }
    if (needsImages && !files.length && !urls.length) { errors.push(["images", T.no_images]); }
    if (params.bad) { errors.push([params.bad, T.bad_json]); }
    if (errors.length) { return {errors: errors}; }
    var fields = {model: name};
    if (!models[name] || schema.prompt) { fields.prompt = prompt; }
    if (!models[name] || schema.n) { fields.n = n; }
    Object.keys(params.values).forEach(function (k) { fields[k] = params.values[k]; });
    if (files.length) {
      var fd = new FormData();
      Object.keys(fields).forEach(function (k) {
        var v = fields[k];
        fd.append(k, typeof v === "object" ? JSON.stringify(v) : String(v));
      });
      files.forEach(function (f) { fd.append("images", f, f.name); });
      return {body: fd, uploading: true};
    }
    if (urls.length) { fields.image_urls = urls; }
    return {body: fields};
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    forgetOldFailure();
    var request = buildRequest();
    if (request.errors) {
      showMessage(T.validation);
      request.errors.forEach(function (e) { fieldError(e[0], e[1]); });
      return;
    }
    submitButton.disabled = true;
    showMessage(request.uploading ? T.uploading : T.sending, "info");
    api("POST", form.dataset.listUrl, request.body).then(function (answer) {
      submitButton.disabled = false;
      if (answer.status === 201) {
        showMessage("");
        follow(answer.data);
        loadRecent();
      } else {
        showApiError(answer);
      }
    }, function () {
      submitButton.disabled = false;
      showMessage(T.network);
    });
  });

  // ---- the current task -------------------------------------------------------------
  function statusText(task) {
    if (task.status === "processing") { return fmt(T.status_processing, task.progress || 0); }
    return T["status_" + task.status] || task.status;
  }

  function showTask(task) {
    el("current").hidden = false;
    el("current").dataset.taskId = task.id;
    el("current").dataset.status = task.status;
    el("current-prompt").textContent = task.prompt;
    var progress = task.status === "completed" ? 100 : (task.progress || 0);
    el("progress-fill").style.width = progress + "%";
    el("progress").setAttribute("aria-valuenow", String(progress));
    el("progress").className = "progress " + task.status;
    var status = el("status");
    status.className = "status " + task.status;
    if (task.status === "failed") {
      var error = task.error || {};
      status.textContent = fmt(T.task_failed, (error.message || "") +
                               (error.code ? " (" + error.code + ")" : ""));
    } else if (task.status === "cancelled") {
      status.textContent = T.task_cancelled;
    } else if (task.status === "completed") {
      var stored = task.images.every(function (i) { return i.url; });
      status.textContent = stored ? doneText(task.images.length) : T.storing;
    } else {
      status.textContent = statusText(task);
    }
    showImages(task);
  }

  function showImages(task) {
    var box = el("results");
    var images = task.status === "completed" ? task.images : [];
    // keep the <img> elements that show the same address (no flicker while polling)
    box.querySelectorAll("figure").forEach(function (fig) {
      var keep = images.some(function (i) {
        return fig.dataset.index === String(i.index) && fig.dataset.src === (i.url || i.source_url);
      });
      if (!keep) { fig.remove(); }
    });
    images.forEach(function (image) {
      var src = image.url || image.source_url;  // the stored copy, else Evolink's 24 h link
      if (box.querySelector('figure[data-index="' + image.index + '"]')) { return; }
      var fig = document.createElement("figure");
      fig.dataset.index = String(image.index);
      fig.dataset.src = src;
      fig.dataset.stored = image.url ? "1" : "0";
      var img = document.createElement("img");
      img.src = src;
      img.alt = fmt(T.image_alt, image.index + 1);
      img.className = "result";
      var caption = document.createElement("figcaption");
      var link = document.createElement("a");
      link.href = src; link.target = "_blank"; link.rel = "noopener";
      link.textContent = T.open;
      caption.textContent = (image.width && image.height ? image.width + "×" + image.height + " " : "");
      caption.appendChild(link);
      fig.appendChild(img); fig.appendChild(caption);
      box.appendChild(fig);
    });
  }

  function follow(task) {
    stopFollowing();
    current = {id: task.id, storeTicks: 0, timer: null, source: null, etag: null};
    showTask(task);
    if (FINAL.indexOf(task.status) < 0 && window.EventSource && form.dataset.eventsUrl) {
      listen(current, task);
    } else {
      schedule(task);
    }
  }

  function stopFollowing() {
    if (!current) { return; }
    if (current.timer) { clearTimeout(current.timer); }
    if (current.source) { current.source.close(); }
  }

  function needsMore(task) {
    if (FINAL.indexOf(task.status) < 0) { return true; }
    if (task.status !== "completed") { return false; }
    return !task.images.every(function (i) { return i.url; });
  }

  // The event stream: an event "task" at once and after every change. It ends after the
  // final status; the images are stored a moment later, which conditional polling waits for.
  function listen(mine, task) {
    var last = task;
    var source = new EventSource(eventsUrl(mine.id));
    mine.source = source;
    source.addEventListener("task", function (event) {
      if (mine !== current) { source.close(); return; }
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      var ended = FINAL.indexOf(data.status) >= 0 && FINAL.indexOf(last.status) < 0;
      last = data;
      showTask(data);
      if (FINAL.indexOf(data.status) >= 0) {
        source.close();
        mine.source = null;
        if (ended) { loadRecent(); }
        schedule(data);
      }
    });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself (after the server's time limit, a network
      // hiccup); when it gave up (an HTTP error), ask for the task instead
      if (mine !== current || source.readyState !== EventSource.CLOSED) { return; }
      mine.source = null;
      schedule(last);
    });
  }

  function schedule(task) {
    if (!needsMore(task)) { loadRecent(); return; }
    if (task.status === "completed" && ++current.storeTicks > STORE_WAIT_TICKS) { return; }
    var mine = current;
    mine.timer = setTimeout(function () { poll(mine, task); }, POLL_MS);
  }

  // GET tasks/{id}/ with If-None-Match: 304 while nothing changed.
  function poll(mine, last) {
    if (mine !== current) { return; }
    var headers = {"Accept": "application/json"};
    if (mine.etag) { headers["If-None-Match"] = mine.etag; }
    fetch(detailUrl(mine.id), {credentials: "same-origin", headers: headers})
      .then(function (response) {
        if (mine !== current) { return; }
        if (response.status === 304) { schedule(last); return; }
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (response.status !== 200 || !data) {
            showApiError({status: response.status, data: data, headers: response.headers});
            return;
          }
          mine.etag = response.headers.get("ETag");
          showTask(data);
          if (FINAL.indexOf(data.status) >= 0 && FINAL.indexOf(last.status) < 0) {
            loadRecent();
          }
          schedule(data);
        });
      }, function () {
        if (mine !== current) { return; }
        el("status").textContent = T.network;
        schedule(last);
      });
  }

  // ---- recent tasks -----------------------------------------------------------------
  function loadRecent() {
    return api("GET", form.dataset.listUrl + "?page_size=10").then(function (answer) {
      var list = el("recent");
      if (answer.status !== 200) { return; }
      var tasks = answer.data.results || answer.data;
      list.innerHTML = "";
      if (!tasks.length) {
        var empty = document.createElement("li");
        empty.className = "muted"; empty.textContent = T.no_tasks;
        list.appendChild(empty);
        return;
      }
      tasks.forEach(function (task) {
        var li = document.createElement("li");
        li.dataset.taskId = task.id;
        li.dataset.status = task.status;
        var badge = document.createElement("span");
        badge.className = "badge " + task.status;
        badge.textContent = task.status;
        var button = document.createElement("button");
        button.type = "button"; button.className = "link";
        button.textContent = task.prompt.length > 60 ? task.prompt.slice(0, 57) + "…" : task.prompt;
        button.addEventListener("click", function () { follow(task); });
        var when = document.createElement("span");
        when.className = "muted small";
        when.textContent = new Date(task.created_at).toLocaleString();
        li.appendChild(badge); li.appendChild(button); li.appendChild(when);
        list.appendChild(li);
      });
    }, function () { /* the list is a convenience; the form still works */ });
  }

  loadModels();
  loadRecent();
})();
