// Charts of one voucher programme in the issuer console (vouchers/issuer_program.html): budget burn-down
// ({{ chart|json_script:"burn-data" }}) and subsidy by hub ({{ hub_chart|json_script:"hub-data" }}).
(function () {
  "use strict";
  if (!window.echarts || !window.SuanliCharts) { return; }
  var yuan = function (v) { return v >= 1e8 ? (v / 1e8) + "亿" : v >= 1e4 ? (v / 1e4) + "万" : v; };
  var read = function (id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; };
  var charts = [];

  var burnBox = document.getElementById("burn-chart");
  var burn = read("burn-data");
  if (burnBox && burn) {
    var burnChart = window.echarts.init(burnBox);
    burnChart.setOption({
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      tooltip: window.SuanliCharts.tooltip({ trigger: "axis" }),
      legend: { top: 0, type: "scroll", data: [burn.labels.left, burn.labels.uncommitted] },
      xAxis: { type: "category", data: burn.days, boundaryGap: false },
      yAxis: { type: "value", min: 0, axisLabel: { formatter: yuan } },
      series: [
        { name: burn.labels.left, type: "line", step: "end", showSymbol: false, areaStyle: { opacity: 0.12 }, data: burn.left },
        { name: burn.labels.uncommitted, type: "line", step: "end", showSymbol: false, lineStyle: { type: "dashed" }, data: burn.uncommitted }
      ]
    });
    charts.push(burnChart);
  }

  var hubBox = document.getElementById("hub-chart");
  var hubs = read("hub-data");
  if (hubBox && hubs) {
    var hubChart = window.echarts.init(hubBox);
    hubChart.setOption({
      grid: { left: 8, right: 24, top: 8, bottom: 8, containLabel: true },
      tooltip: window.SuanliCharts.tooltip({ trigger: "axis", axisPointer: { type: "shadow" } }),
      xAxis: { type: "value", min: 0, axisLabel: { formatter: yuan } },
      yAxis: { type: "category", inverse: true, data: hubs.names },
      series: [{ type: "bar", data: hubs.amounts, barMaxWidth: 24 }]
    });
    charts.push(hubChart);
  }

  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
