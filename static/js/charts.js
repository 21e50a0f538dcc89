// Helpers shared by the portal's ECharts pages (load after vendor/echarts and before the page's chart file).
//
// SuanliCharts.tooltip({trigger: "axis", valueFormatter: fn, ...}) returns ECharts tooltip options whose
// content is built as DOM nodes. ECharts' own formatter writes HTML with style="..." attributes, which the
// Content-Security-Policy (style-src 'self') refuses; styles set here go through the CSSOM, which it allows.
window.SuanliCharts = (function () {
  "use strict";

  function node(tag, className, text) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    if (text != null) { el.textContent = String(text); }
    return el;
  }

  function plain(value) {
    if (value == null || value === "" || (typeof value === "number" && isNaN(value))) { return "–"; }
    return typeof value === "number" ? value.toLocaleString() : String(value);
  }

  function colorOf(param) {
    var color = param.color;
    if (color && typeof color === "object" && color.colorStops && color.colorStops.length) {
      color = color.colorStops[0].color;
    }
    return typeof color === "string" ? color : "#6c757d";
  }

  // The value shown for one series: the y dimension of [x, y] pairs, else the value itself.
  function valueOf(param) {
    var value = param.value;
    if (Array.isArray(value)) {
      var dim = param.encode && param.encode.y && param.encode.y.length ? param.encode.y[0] : value.length - 1;
      value = value[dim];
    }
    return value;
  }

  function row(param, format, extra) {
    var line = node("div", "chart-tip-row");
    var name = node("span", "chart-tip-name");
    var marker = node("span", "chart-tip-marker");
    marker.style.backgroundColor = colorOf(param);
    name.appendChild(marker);
    name.appendChild(document.createTextNode(param.seriesType === "pie" ? param.name : (param.seriesName || param.name || "")));
    line.appendChild(name);
    line.appendChild(node("span", "chart-tip-value", format(valueOf(param)) + (extra || "")));
    return line;
  }

  function tooltip(options) {
    var settings = Object.assign({}, options);
    var format = settings.valueFormatter || plain;
    delete settings.valueFormatter;
    settings.formatter = function (params) {
      var box = node("div", "chart-tip");
      var list = Array.isArray(params) ? params : [params];
      if (!list.length) { return box; }
      var first = list[0];
      if (Array.isArray(params)) {
        box.appendChild(node("div", "chart-tip-title", first.axisValueLabel != null ? first.axisValueLabel : first.name));
      }
      list.forEach(function (param) {
        var extra = param.seriesType === "pie" && param.percent != null ? " (" + param.percent + "%)" : "";
        box.appendChild(row(param, format, extra));
      });
      return box;
    };
    return settings;
  }

  return { tooltip: tooltip };
})();
